//! The runtime: one thread that owns the device, the clock and the core.
//!
//! The core (`netstack`) is sans-IO; this is where IO happens. One thread
//! loops:
//!
//! 1. wait (poll(2)) until the TUN descriptor is readable, an application
//!    thread kicks the wake-up eventfd, or the core's next deadline comes;
//! 2. under the lock: read every waiting packet into the core, run due
//!    timers, write every packet the core queued to the device, and collect
//!    events and the sockets whose readiness changed;
//! 3. outside the lock: wake exactly the application threads that wait on
//!    those sockets (one condition variable per socket — no thundering herd,
//!    no busy polling) and write the events to the log and the JSON file.
//!
//! Application threads call into the core under the same lock, then kick the
//! runtime so that what they queued (data, FIN, window updates) goes out.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smoltcp::time::Instant;

use crate::device::faults::{FaultConfig, Faults};
use crate::device::packet_io::PacketIo;
use crate::device::pcap::PcapWriter;
use crate::device::tun::TunDevice;
use crate::engine::netstack::{Captured, NetStack, Ready};
use crate::observe::event::Record;
use crate::observe::event_stream::Streams;
use crate::wire::quad::IdMap;

/// The stack's clock: Unix time (so events line up with packet captures),
/// advancing monotonically from the moment the stack started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_unix_us: i64,
    start: std::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Clock {
            start_unix_us: unix,
            start: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start_unix_us + self.start.elapsed().as_micros() as i64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Where events and packets go: `log` (human lines), optionally a JSON-lines
/// writer, optionally a pcap capture.
pub struct EventSink {
    json: Option<Box<dyn Write + Send>>,
    pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
}

impl EventSink {
    pub fn new(
        json: Option<Box<dyn Write + Send>>,
        pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    ) -> EventSink {
        EventSink { json, pcap }
    }

    /// Appends captured packets to the pcap file and flushes it.
    pub fn write_packets(&mut self, packets: &[Captured]) {
        let Some(w) = self.pcap.as_mut() else {
            return;
        };
        if packets.is_empty() {
            return;
        }
        for p in packets {
            // A full disk must not stop the stack; the capture just ends.
            if w.write_packet(p.ts, &p.data).is_err() {
                self.pcap = None;
                log::warn!("the packet capture could not be written; capture stopped");
                return;
            }
        }
        let _ = w.flush();
    }

    pub fn write(&mut self, records: &[Record]) {
        for r in records {
            if log::log_enabled!(target: "portlab", log::Level::Info) {
                log::info!(target: "portlab", "{}", r.human());
            }
        }
        if let Some(out) = self.json.as_mut() {
            for r in records {
                // A full disk or a closed pipe must not stop the stack.
                let _ = writeln!(out, "{}", r.json());
            }
            let _ = out.flush();
        }
    }
}

/// What the threads blocked on one socket (or in one poller) sleep on. It
/// counts them: waking costs a system call, wasted when nobody sleeps, and
/// after a read the socket's one sleeper is usually the reader itself,
/// awake. The count changes only under the core's lock, which the waking
/// side has held since the change it reports, so it cannot miss a sleeper.
#[derive(Default)]
pub struct Sleepers {
    cv: Condvar,
    asleep: AtomicUsize,
    /// How many of the sleepers are already counted in [`Inner::waking`].
    counted: AtomicUsize,
}

impl Sleepers {
    /// Sleeps, releasing `g`, until woken or `timeout` passes.
    pub fn sleep<'a>(
        &self,
        g: MutexGuard<'a, Inner>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Inner> {
        self.asleep.fetch_add(1, Ordering::Relaxed);
        let mut g = match timeout {
            None => self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(t) => match self.cv.wait_timeout(g, t) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            },
        };
        self.asleep.fetch_sub(1, Ordering::Relaxed);
        if self.counted.load(Ordering::Relaxed) > 0 {
            self.counted.fetch_sub(1, Ordering::Relaxed);
            g.waking = g.waking.saturating_sub(1);
        }
        g
    }

    /// Counts the sleepers that a wake-up is about to wake and that no
    /// earlier one has counted (under the lock): how many more threads
    /// will run.
    fn count_woken(&self) -> usize {
        let asleep = self.asleep.load(Ordering::Relaxed);
        let counted = self.counted.swap(asleep, Ordering::Relaxed);
        asleep.saturating_sub(counted)
    }

    pub fn wake_all(&self) {
        if self.asleep.load(Ordering::Relaxed) > 0 {
            self.cv.notify_all();
        }
    }

    fn wake_one(&self) {
        if self.asleep.load(Ordering::Relaxed) > 0 {
            self.cv.notify_one();
        }
    }
}

/// A readiness poller's state (see `net::Poller`).
#[derive(Default)]
pub struct PollerState {
    pub cv: Arc<Sleepers>,
    /// Tokens whose readiness may have changed since the last poll.
    pub pending: Vec<usize>,
    /// What each registered token watches.
    pub registered: HashMap<usize, (Ready, bool, bool)>,
}

impl PollerState {
    /// Marks `token` for the poller's next look.
    fn mark(&mut self, token: usize) {
        if !self.pending.contains(&token) {
            self.pending.push(token);
        }
    }

    fn hint(&mut self, token: usize) {
        self.mark(token);
        self.cv.wake_one();
    }
}

/// Everything behind the lock.
pub struct Inner {
    pub net: NetStack,
    waiters: IdMap<Ready, Arc<Sleepers>>,
    pub pollers: HashMap<u64, PollerState>,
    /// Which pollers (and under which token) watch each socket.
    watches: IdMap<Ready, Vec<(u64, usize)>>,
    next_poller: u64,
    /// Set when shutdown begins; the deadline for peers to finish closing.
    stopping: Option<Instant>,
    /// Connections open when shutdown began.
    open_at_stop: usize,
    pub stopped: bool,
    /// Reused to pass on readiness (see `take_output`).
    ready_scratch: Vec<Ready>,
    /// Threads that a wake-up has been sent to and that have not run yet
    /// (see [`Shared::after_app_call`]).
    waking: usize,
}

impl Inner {
    /// What a thread waiting on `r` sleeps on.
    pub fn waiter(&mut self, r: Ready) -> Arc<Sleepers> {
        self.waiters.entry(r).or_default().clone()
    }

    /// The socket is gone: forget its waiter and every poller registration.
    pub fn forget_waiter(&mut self, r: Ready) {
        self.waiters.remove(&r);
        for (pid, token) in self.watches.remove(&r).unwrap_or_default() {
            if let Some(p) = self.pollers.get_mut(&pid) {
                p.registered.remove(&token);
            }
        }
    }

    /// Moves what the core queued out of it: its packets into `out`, and
    /// the condition variables of the threads its changes concern into
    /// `notify` (see [`Inner::wake`]).
    fn take_output(&mut self, out: &mut Vec<Vec<u8>>, notify: &mut Vec<Arc<Sleepers>>) {
        while let Some(p) = self.net.take_transmit() {
            out.push(p);
        }
        self.take_ready(notify);
    }

    /// The readiness half of [`Inner::take_output`].
    fn take_ready(&mut self, notify: &mut Vec<Arc<Sleepers>>) {
        let mut ready = std::mem::take(&mut self.ready_scratch);
        self.net.drain_ready(&mut ready);
        for r in ready.drain(..) {
            self.wake(r, notify);
        }
        self.ready_scratch = ready;
    }

    /// Finds whoever waits on `r` (its own blocked thread, and the pollers
    /// that watch it) and adds their condition variables to `notify`, to be
    /// signalled once the lock is released: a thread woken while the lock is
    /// held would run only to block on it, and on one CPU that is two more
    /// thread switches.
    fn wake(&mut self, r: Ready, notify: &mut Vec<Arc<Sleepers>>) {
        let waking = &mut self.waking;
        let mut add = |cv: &Arc<Sleepers>| {
            if !notify.iter().any(|n| Arc::ptr_eq(n, cv)) {
                *waking += cv.count_woken();
                notify.push(cv.clone());
            }
        };
        if let Some(cv) = self.waiters.get(&r) {
            add(cv);
        }
        if let Some(watchers) = self.watches.get(&r) {
            for &(pid, token) in watchers {
                if let Some(p) = self.pollers.get_mut(&pid) {
                    p.mark(token);
                    add(&p.cv);
                }
            }
        }
    }

    pub fn new_poller(&mut self) -> (u64, Arc<Sleepers>) {
        self.next_poller += 1;
        let p = PollerState::default();
        let cv = p.cv.clone();
        self.pollers.insert(self.next_poller, p);
        (self.next_poller, cv)
    }

    pub fn drop_poller(&mut self, pid: u64) {
        if let Some(p) = self.pollers.remove(&pid) {
            for (r, _, _) in p.registered.values() {
                if let Some(w) = self.watches.get_mut(r) {
                    w.retain(|(p, _)| *p != pid);
                }
            }
        }
    }

    /// Registers `r` with poller `pid` under `token` (replacing an earlier
    /// registration of that token), and hints it once so that readiness that
    /// already holds is reported.
    pub fn watch(&mut self, pid: u64, token: usize, r: Ready, readable: bool, writable: bool) {
        self.unwatch(pid, token);
        let Some(p) = self.pollers.get_mut(&pid) else {
            return;
        };
        p.registered.insert(token, (r, readable, writable));
        p.hint(token);
        self.watches.entry(r).or_default().push((pid, token));
    }

    pub fn unwatch(&mut self, pid: u64, token: usize) {
        let Some(p) = self.pollers.get_mut(&pid) else {
            return;
        };
        if let Some((r, _, _)) = p.registered.remove(&token)
            && let Some(w) = self.watches.get_mut(&r)
        {
            w.retain(|e| *e != (pid, token));
        }
    }
}

/// State shared by the runtime thread and the application threads.
pub struct Shared {
    inner: Mutex<Inner>,
    /// Signalled once when the runtime has stopped.
    stopped: Condvar,
    wake: OwnedFd,
    kicked: AtomicBool,
    pub clock: Clock,
    /// The device, for application threads to write what their calls
    /// produced themselves (see [`Shared::after_app_call`]); `None` behind
    /// the lossy link, whose injectors live in the runtime.
    direct: Option<Arc<TunDevice>>,
    /// When the runtime's current sleep ends at the latest (µs, the clock's
    /// time): an application call that sets an earlier timer must wake it.
    runtime_deadline: AtomicI64,
    /// The event streams (`GET /events`): every record logged goes to them too.
    pub streams: Streams,
}

impl Shared {
    pub fn new(net: NetStack, clock: Clock, direct: Option<Arc<TunDevice>>) -> io::Result<Shared> {
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Shared {
            inner: Mutex::new(Inner {
                net,
                waiters: IdMap::default(),
                pollers: HashMap::new(),
                watches: IdMap::default(),
                next_poller: 0,
                stopping: None,
                open_at_stop: 0,
                stopped: false,
                ready_scratch: Vec::new(),
                waking: 0,
            }),
            stopped: Condvar::new(),
            // SAFETY: fd is a fresh descriptor we own.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            kicked: AtomicBool::new(false),
            direct,
            runtime_deadline: AtomicI64::new(i64::MIN),
            streams: Streams::default(),
            clock,
        })
    }

    /// Locks the core. A panic in another thread must not take the stack down.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After an application call, with the lock held: collects the threads
    /// the call concerns, for the caller to wake once the lock is released,
    /// and says whether the runtime must be kicked. The runtime is woken only
    /// for what only it can do: write events and captures, keep a timer
    /// earlier than the one it sleeps until, or (unless `write_here`) send
    /// what the call queued. A read that only takes bytes, the usual case,
    /// wakes nobody: measured, a kick per read was a runtime wake-up per
    /// batch of a bulk transfer for nothing.
    ///
    /// With `write_here`, the packets the call queued are taken too, for the
    /// caller to write straight to the device, so that a response needs no
    /// trip through the runtime thread (two context switches per request
    /// fewer); without a device of our own to write to, the runtime sends
    /// them. Nor while other threads have been woken and not run yet
    /// (`Inner::waking`): they are about to queue responses of their own,
    /// and the last of them to write (or the runtime) sends everything in
    /// one batch. Measured on one CPU, the live page with 50 keep-alive
    /// connections (a thread each), 8 rounds: 10,800 against 9,000 req/s
    /// (median) with every thread writing its own; one connection is as
    /// before, since nobody else is ever waking.
    pub fn after_app_call(
        &self,
        g: &mut Inner,
        write_here: bool,
        out: &mut Vec<Vec<u8>>,
        notify: &mut Vec<Arc<Sleepers>>,
    ) -> bool {
        let write_here = write_here && self.direct.is_some() && g.waking == 0;
        if write_here {
            g.take_output(out, notify);
        } else {
            g.take_ready(notify);
        }
        let earlier_timer = g
            .net
            .poll_at()
            .is_some_and(|t| t.total_micros() < self.runtime_deadline.load(Ordering::Acquire));
        (!write_here && g.net.has_transmit())
            || g.net.has_records()
            || earlier_timer
            || g.stopping.is_some()
    }

    /// Marks the stack stopped and wakes every thread waiting on it: on a
    /// socket, in a poller, or for the stop itself.
    fn mark_stopped(&self, g: &mut Inner) {
        g.stopped = true;
        for cv in g.waiters.values() {
            cv.wake_all();
        }
        for p in g.pollers.values() {
            p.cv.wake_all();
        }
        self.stopped.notify_all();
    }

    /// Writes packets an application call produced (after
    /// [`Shared::after_app_call`], without the lock).
    pub fn write_direct(&self, packets: &mut Vec<Vec<u8>>) {
        if let Some(device) = self.direct.as_ref() {
            device.send_all(packets);
        }
    }

    /// Asks the runtime to flush what an application call queued.
    pub fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
            unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                );
            }
        }
    }

    /// Starts a clean stop: FIN to every peer, then up to `grace` for them to
    /// finish before the rest is reset. Returns when the runtime has stopped.
    pub fn shutdown(&self, grace: std::time::Duration) {
        let mut g = self.lock();
        if g.stopping.is_none() && !g.stopped {
            let now = self.clock.now();
            g.open_at_stop = g.net.open_connections();
            g.net.begin_shutdown(now);
            g.stopping = Some(now + smoltcp::time::Duration::from_micros(grace.as_micros() as u64));
        }
        drop(g);
        self.kick();
        let mut g = self.lock();
        while !g.stopped {
            g = self.stopped.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn drain_wake(&self) {
        let mut v: u64 = 0;
        // Read first, then clear: a kick that lands after the read finds the
        // flag still set and skips its write, but the work it signals is
        // done right after this (the caller processes everything next); a
        // kick after the clear writes again. Clearing first could swallow a
        // write and leave the flag set with an empty eventfd for good.
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            );
        }
        self.kicked.store(false, Ordering::Release);
    }
}

/// Marks the stack stopped if the runtime thread ends any other way than
/// through a clean stop (a panic), so that no application thread and no
/// `shutdown` waits forever.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        if !g.stopped {
            self.0.mark_stopped(&mut g);
        }
    }
}

/// Puts the runtime thread in `SCHED_BATCH`: woken by a packet, it no longer
/// preempts an application thread that is running, but runs when that one
/// blocks or its time slice ends, and then finds many packets waiting. With
/// an idle CPU it runs at once, as before. On a busy one this is interrupt
/// coalescing: without it, a bulk sender on the same CPU was preempted by the
/// runtime for every ACK the kernel queued during its own write (stack to
/// kernel 2.1 against 2.9 Gbit/s).
fn yield_to_applications() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid parameter block; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        log::debug!(target: "portlab", "SCHED_BATCH: {}", io::Error::last_os_error());
    }
}

/// The runtime thread's loop. Returns when the stack has stopped.
pub fn run(shared: Arc<Shared>, device: Arc<TunDevice>, mut sink: EventSink, faults: FaultConfig) {
    let _stop = StopOnExit(&shared);
    yield_to_applications();
    let mut io = PacketIo::new(&device, shared.wake.as_raw_fd(), faults.any());
    // The lossy link, when asked for: one injector per direction.
    let mut lossy = faults
        .any()
        .then(|| (Faults::new(faults, 1), Faults::new(faults, 2)));
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut records = Vec::new();
    let mut captured = Vec::new();
    let mut notify = Vec::new();
    loop {
        let timeout_ms = {
            let g = shared.lock();
            let now = shared.clock.now();
            let ms = match g.net.poll_at() {
                Some(t) if t <= now => 0,
                Some(t) => ((t - now).total_millis() as i32).clamp(1, 1000),
                None => 1000,
            };
            shared
                .runtime_deadline
                .store(now.total_micros() + i64::from(ms) * 1000, Ordering::Release);
            ms
        };
        if io.wait(Duration::from_millis(timeout_ms as u64)) {
            shared.drain_wake();
        }

        let done = {
            let mut g = shared.lock();
            let now = shared.clock.now();
            g.net.begin_batch();
            io.receive(|packet, checksummed| match lossy.as_mut() {
                None if checksummed => g.net.receive_checksummed(now, packet),
                None => g.net.receive(now, packet),
                Some((rx, _)) => rx.apply(packet.to_vec(), &mut batch),
            });
            if let Some((rx, _)) = lossy.as_mut() {
                rx.release(&mut batch);
                for p in batch.drain(..) {
                    g.net.receive(now, &p);
                }
            }
            g.net.end_batch(now);
            g.net.poll_timers(now);
            let done = match g.stopping {
                Some(deadline) if g.net.open_connections() == 0 || now >= deadline => {
                    let open = g.open_at_stop;
                    let still = g.net.open_connections();
                    g.net.finish_shutdown(now, open.saturating_sub(still));
                    true
                }
                _ => false,
            };
            g.take_output(&mut out, &mut notify);
            if let Some((_, tx)) = lossy.as_mut() {
                for p in std::mem::take(&mut out) {
                    tx.apply(p, &mut out);
                }
                tx.release(&mut out);
            }
            io.send_all(&mut out);
            g.net.drain_events(&mut records);
            g.net.take_capture(&mut captured);
            done
        };
        for cv in notify.drain(..) {
            cv.wake_all();
        }
        sink.write_packets(&captured);
        captured.clear();
        sink.write(&records);
        shared.streams.publish(&records);
        records.clear();
        if done && let Some((rx, tx)) = &lossy {
            log::info!(target: "portlab", "lossy link, in: {:?}; out: {:?}", rx.stats, tx.stats);
        }
        if done {
            // Only now, with the last events written, may anyone see the
            // stack as stopped (and the process exit).
            shared.streams.close_all();
            shared.mark_stopped(&mut shared.lock());
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::config::NetConfig;
    use crate::wire::quad::SocketId;

    fn shared() -> Arc<Shared> {
        let clock = Clock::new();
        let net = NetStack::new(
            NetConfig::new(Ipv4Addr::new(10, 203, 80, 2), 24),
            clock.now(),
        );
        Arc::new(Shared::new(net, clock, None).expect("an eventfd"))
    }

    /// A thread blocked on `r` as a call blocks, until `go`; returns once it
    /// sleeps.
    fn sleeper(
        shared: &Arc<Shared>,
        r: Ready,
        go: &Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let (s, go) = (shared.clone(), go.clone());
        let t = std::thread::spawn(move || {
            let mut g = s.lock();
            let cv = g.waiter(r);
            while !go.load(Ordering::Relaxed) {
                g = cv.sleep(g, None);
            }
        });
        while shared.lock().waiter(r).asleep.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        t
    }

    #[test]
    fn woken_threads_count_as_waking_until_they_run() {
        let shared = shared();
        let go = Arc::new(AtomicBool::new(false));
        let (a, b) = (Ready::Socket(SocketId(1)), Ready::Socket(SocketId(2)));
        let threads = [sleeper(&shared, a, &go), sleeper(&shared, b, &go)];
        let mut notify = Vec::new();
        {
            let mut g = shared.lock();
            assert_eq!(g.waking, 0, "nobody woken yet");
            g.wake(a, &mut notify);
            g.wake(b, &mut notify);
            assert_eq!(g.waking, 2, "two sleepers about to run");
            // Another change on `a` before its thread has run is the same
            // wake-up, not a third thread.
            g.wake(a, &mut Vec::new());
            assert_eq!(g.waking, 2);
            // A socket nobody sleeps on wakes nobody.
            g.wake(Ready::Socket(SocketId(3)), &mut Vec::new());
            assert_eq!(g.waking, 2);
            go.store(true, Ordering::Relaxed);
        }
        for cv in notify {
            cv.wake_all();
        }
        for t in threads {
            t.join().expect("the sleeper");
        }
        assert_eq!(shared.lock().waking, 0, "both ran");
    }
}
