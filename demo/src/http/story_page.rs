//! `/story/<id>`: one connection's story, readable without knowing TCP by
//! heart — a sequence diagram of its handshake and teardown (SVG, with
//! relative and absolute sequence numbers and the options each side
//! offered) and the timeline of its events.

use std::fmt::Write as _;

use portlab::observe::event::{Closer, Event};
use portlab::observe::story::{SegmentNote, Story};

use crate::http::page::{CSS, html_escape};

const WIDTH: i32 = 760;
const LEFT: i32 = 150;
const RIGHT: i32 = 610;
const ROW: i32 = 54;
const TOP: i32 = 70;

/// A segment's label: flags, relative numbers, then the absolute ones.
fn label(s: &SegmentNote, story: &Story) -> (String, String) {
    let (peer_isn, stack_isn) = story.isns();
    let (own, other) = if s.inbound {
        (peer_isn, stack_isn)
    } else {
        (stack_isn, peer_isn)
    };
    let rel = |v: u32, base: Option<u32>| base.map_or(v, |b| v.wrapping_sub(b));
    let mut top = format!("{}  seq={}", s.flags(), rel(s.seq, own));
    if s.ack {
        let _ = write!(top, " ack={}", rel(s.ack_number, other));
    }
    if s.len > 0 {
        let _ = write!(top, " len={}", s.len);
    }
    let mut bottom = format!("absolute seq={}", s.seq);
    if s.ack {
        let _ = write!(bottom, " ack={}", s.ack_number);
    }
    let o = &s.options;
    if let Some(m) = o.mss {
        let _ = write!(bottom, " · MSS {m}");
    }
    if let Some(w) = o.window_scale {
        let _ = write!(bottom, " · window scale {w}");
    }
    if o.sack_permitted {
        bottom.push_str(" · SACK ok");
    }
    if o.timestamp.is_some() {
        bottom.push_str(" · timestamps");
    }
    (top, bottom)
}

/// Who closed first, from the story's events.
fn closer(story: &Story) -> Option<&str> {
    story.events.iter().find_map(|r| match r.event {
        Event::Closed { by, .. } => Some(match by {
            Closer::Local => "the stack closed first, so it holds TIME-WAIT",
            Closer::Remote => "the peer closed first, so the peer holds TIME-WAIT",
            Closer::Reset => "the connection ended with a reset",
            Closer::Timeout | Closer::Evicted => "the handshake never completed",
        }),
        _ => None,
    })
}

fn svg(story: &Story) -> String {
    let n = story.segments.len() as i32;
    let height = TOP + ROW * n.max(1) + 60;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"ui-monospace,monospace\" font-size=\"12\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/>\
         </marker></defs>"
    );
    let _ = write!(
        o,
        "<text x=\"{LEFT}\" y=\"20\" text-anchor=\"middle\" font-weight=\"bold\">peer</text>\
         <text x=\"{LEFT}\" y=\"36\" text-anchor=\"middle\">{}</text>\
         <text x=\"{RIGHT}\" y=\"20\" text-anchor=\"middle\" font-weight=\"bold\">portlab (socket #{})</text>\
         <text x=\"{RIGHT}\" y=\"36\" text-anchor=\"middle\">{}</text>\
         <line x1=\"{LEFT}\" y1=\"44\" x2=\"{LEFT}\" y2=\"{h}\" stroke=\"#999\"/>\
         <line x1=\"{RIGHT}\" y1=\"44\" x2=\"{RIGHT}\" y2=\"{h}\" stroke=\"#999\"/>",
        story.quad.remote,
        story.id.0,
        story.quad.local,
        h = height - 20
    );
    let t0 = story.segments.first().map(|s| s.ts);
    for (i, s) in story.segments.iter().enumerate() {
        let y = TOP + ROW * i as i32;
        let (x1, x2) = if s.inbound {
            (LEFT, RIGHT)
        } else {
            (RIGHT, LEFT)
        };
        let colour = if s.rst {
            "#c0392b"
        } else if s.syn {
            "#2a6fdb"
        } else if s.fin {
            "#8e44ad"
        } else {
            "#333"
        };
        let (top, bottom) = label(s, story);
        let ms = t0.map_or(0.0, |t| (s.ts - t).total_micros() as f64 / 1000.0);
        let _ = write!(
            o,
            "<text x=\"8\" y=\"{ty}\" fill=\"#777\">+{ms:.3} ms</text>\
             <line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{colour}\" stroke-width=\"2\" \
             marker-end=\"url(#arrow)\"/>\
             <text x=\"{mid}\" y=\"{ly}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>\
             <text x=\"{mid}\" y=\"{by}\" text-anchor=\"middle\" fill=\"#777\" font-size=\"10\">{}</text>",
            html_escape(&top),
            html_escape(&bottom),
            ty = y + 4,
            y2 = y + 14,
            mid = (LEFT + RIGHT) / 2,
            ly = y - 4,
            by = y + 30,
        );
    }
    if let Some(c) = closer(story) {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-style=\"italic\">{}</text>",
            WIDTH / 2,
            height - 6,
            html_escape(c)
        );
    }
    o.push_str("</svg>");
    o
}

pub fn html(story: &Story) -> String {
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>portlab: the story of socket #{id}</title><style>{CSS}</style></head><body>\
         <p><a href=\"/\">&larr; the connection table</a></p>\
         <h1>Socket #{id}: {local} &larr; {remote}</h1>\
         <p>One connection, one socket, one 4-tuple. The diagram shows its handshake (SYN, \
         SYN-ACK, ACK) and its teardown (FIN, ACK in each direction). Sequence numbers are shown \
         relative to each side's initial sequence number (ISN), as Wireshark does, with the \
         absolute values below. {data}</p>",
        id = story.id.0,
        local = story.quad.local,
        remote = story.quad.remote,
        data = if story.data_in + story.data_out > 0 {
            format!(
                "Between them, {} data segment(s) from the peer and {} from the stack are not drawn.",
                story.data_in, story.data_out
            )
        } else {
            String::new()
        },
    );
    h.push_str(&svg(story));
    if story.dropped > 0 {
        let _ = write!(h, "<p>{} more segments were not kept.</p>", story.dropped);
    }
    h.push_str(
        "<h2>Timeline</h2><table><tr><th>time</th><th>event</th><th>what happened</th></tr>",
    );
    let t0 = story.events.first().map(|r| r.ts);
    for r in &story.events {
        let ms = t0.map_or(0.0, |t| (r.ts - t).total_micros() as f64 / 1000.0);
        let _ = write!(
            h,
            "<tr><td>+{ms:.3} ms</td><td>{}</td><td>{}</td></tr>",
            html_escape(r.event.kind()),
            html_escape(&r.human())
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use portlab::observe::event::SynOptions;
    use portlab::time::Instant;

    fn seg(inbound: bool, syn: bool, ack: bool, seq: u32, ack_number: u32) -> SegmentNote {
        SegmentNote {
            ts: Instant::from_millis(1),
            inbound,
            syn,
            ack,
            fin: false,
            rst: false,
            seq,
            ack_number,
            len: 0,
            options: SynOptions {
                mss: syn.then_some(1460),
                ..Default::default()
            },
        }
    }

    #[test]
    fn labels_show_relative_and_absolute_numbers() {
        let mut story = portlab::observe::story::Stories::default();
        let quad = portlab::Quad::new(
            "10.203.80.2:80".parse().unwrap(),
            "10.203.80.1:5000".parse().unwrap(),
        );
        story.begin(portlab::SocketId(3), quad);
        let mut s = story.get(portlab::SocketId(3)).unwrap().clone();
        s.segments = vec![
            seg(true, true, false, 1000, 0),
            seg(false, true, true, 7000, 1001),
        ];
        let (top, bottom) = label(&s.segments[1], &s);
        assert_eq!(top, "SYN-ACK  seq=0 ack=1");
        assert_eq!(bottom, "absolute seq=7000 ack=1001 · MSS 1460");
        let page = html(&s);
        assert!(page.contains("<svg") && page.contains("SYN  seq=0"));
    }

    /// Who closed first is read from the typed `closed` event, and the
    /// timeline renders the event's human line.
    #[test]
    fn who_closed_first_comes_from_the_closed_event() {
        let mut stories = portlab::observe::story::Stories::default();
        let id = portlab::SocketId(4);
        let quad = portlab::Quad::new(
            "10.203.80.2:80".parse().unwrap(),
            "10.203.80.1:5001".parse().unwrap(),
        );
        stories.begin(id, quad);
        assert_eq!(closer(stories.get(id).unwrap()), None);
        for by in [Closer::Remote, Closer::Local] {
            let record = portlab::Record {
                ts: Instant::from_millis(5),
                event: Event::Closed { id, quad, by },
                frame: None,
            };
            stories.event(id, &record);
        }
        let s = stories.get(id).unwrap();
        assert_eq!(
            closer(s),
            Some("the peer closed first, so the peer holds TIME-WAIT"),
            "the first closed event counts"
        );
        let line = s.events[0].human();
        assert!(html(s).contains(&html_escape(&line)), "{line}");
    }
}
