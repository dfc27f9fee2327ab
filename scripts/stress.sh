#!/usr/bin/env bash
# The full forms of the robustness scenarios (CI runs them with small counts
# as part of scripts/itest.sh). Everything stays in the namespaces itest.sh
# creates; every load is bounded in count and time. Takes about an hour,
# most of it the 100 MiB through the lossy link, downloaded and then echoed
# both ways (recovery from loss is bound by retransmission timeouts: about
# 8 s per MiB downloaded at these rates).
#
#   sudo scripts/stress.sh
set -u
cd "$(dirname "$0")/.."
export FLOOD_COUNT=200000      # spoofed SYNs from a blackholed lab range
export SOURCES_COUNT=1000000   # spoofed SYNs from four sources of that range (issue #19)
export SLOW_COUNT=1000         # slowloris connections
export LOSSY_BYTES=104857600   # 100 MiB through 5% drop, 5% reorder, 1% dup, 1% corrupt
export LOSSY30_BYTES=1048576   # 1 MiB through 30% drop
export CHURN_COUNT=100000      # short connections
export LOSSY_TIMEOUT=3600      # seconds curl may take for the lossy transfer
exec ./scripts/itest.sh syn_flood syn_flood_sources slow_clients lossy_link churn
