//! What a visitor sees: its own 4-tuple and the live connection table, as
//! HTML (`GET /`) and as JSON (`GET /connections.json`).
//!
//! Both show a *page* of the table, never all of it: at 100,000 connections
//! the whole table is megabytes, and a browser redrawing it every second
//! stalls. A page holds the counts of every row (by state, by local port, by
//! remote host), the visitor's own connection first, and the newest
//! connections that pass the query's filter (`query`), with links to the
//! next and previous pages.

use std::fmt::Write as _;

use portlab::Quad;
use portlab::observe::event::{Shown, to_json};
use portlab::observe::event_stream::StreamCounts;
use portlab::observe::table::{Query, Remote, STATES, SocketInfo, TablePage};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::http::query;

/// Everything a page shows.
pub struct View<'a> {
    pub you: Quad,
    pub your_id: u64,
    pub model: &'a str,
    pub page: &'a TablePage,
    pub query: &'a Query,
    /// The event streams (`/events`) served so far.
    pub streams: StreamCounts,
}

impl View<'_> {
    /// Connections (not TIME-WAIT, not closing) on the visitor's local port.
    fn open_on_port(&self) -> usize {
        self.page.open_on_port(self.you.local.port())
    }

    /// `/connections.json`: the visitor's row first, the serving model, the
    /// event streams' counts, then the page of the table.
    pub fn json(&self) -> String {
        to_json(self)
    }

    pub fn html(&self) -> String {
        let you = &self.you;
        let port = you.local.port();
        let n = self.open_on_port();
        // The fixed part is about 9 KB, a row about 200 bytes: one allocation.
        let mut h = String::with_capacity(12 * 1024 + 256 * self.page.sockets.len());
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>portlab: you are {remote}</title><style>{CSS}</style></head><body>\
             <h1>One port, many connections</h1>\
             <p class=\"you\" id=\"you\">You are <b>{remote}</b> talking to <b>{local}</b> \
             &mdash; one of <b id=\"count\">{n}</b> <span id=\"noun\">connection{s}</span> on port {port} \
             right now.</p>\
             <p>Your browser (its kernel, really) picked source port <b>{rport}</b> for this \
             connection. The stack listens on port {port} with <em>one</em> listening socket; \
             when your SYN arrived it created a new socket (<b>#{id}</b>) just for the 4-tuple \
             <code>{local} &larr; {remote}</code>, and every segment carrying that 4-tuple goes to \
             that socket alone. Open a second tab and it gets a different source port: a \
             different 4-tuple, another socket, the same listening port.</p>\
             <p>Serving model: <b>{model}</b>.</p>",
            remote = you.remote,
            local = you.local,
            rport = you.remote.port(),
            id = self.your_id,
            s = if n == 1 { "" } else { "s" },
            model = html_escape(self.model),
        );
        h.push_str("<h2>Your connection</h2><table id=\"mine\">");
        h.push_str(SOCKET_HEADINGS);
        if let Some(row) = &self.page.you {
            socket_row(&mut h, row, true);
        }
        h.push_str("</table><h2>Listening sockets</h2><table id=\"listeners\">");
        h.push_str(LISTENER_HEADINGS);
        for l in &self.page.listeners {
            let _ = write!(
                h,
                "<tr><td>#{}{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                l.id.0,
                if l.reuse { " (reuse-port)" } else { "" },
                l.local,
                l.syn_queue,
                if l.syn_cookies {
                    " (full: SYN cookies)"
                } else {
                    ""
                },
                l.accept_queue,
                l.backlog
            );
        }
        h.push_str("</table><h2>What the table holds</h2><div id=\"counts\">");
        self.counts_html(&mut h);
        h.push_str("</div>");
        self.filter_form(&mut h);
        h.push_str("<h2>Connections, newest first</h2><p id=\"pager\">");
        self.pager_html(&mut h);
        h.push_str("</p><table id=\"sockets\">");
        h.push_str(SOCKET_HEADINGS);
        for row in &self.page.sockets {
            socket_row(&mut h, row, row.quad == *you);
        }
        let st = &self.page.stats;
        let _ = writeln!(
            h,
            "</table><p class=\"stats\" id=\"stats\">{}.</p>\
             <h2>As it happens</h2><p id=\"live\">The stack's events reach this page as they \
             happen, pushed over one connection that stays open \
             (<a href=\"/events{eqs}\">/events{eqs}</a>, Server-Sent Events).</p><ol id=\"feed\"></ol>\
             <p>Each socket links to its story: a diagram of \
             its handshake and teardown, and its events. The same page as JSON: \
             <a href=\"/connections.json{qs}\">/connections.json{qs}</a>.</p>\
             <script>const MINE = {mine}, QUERY = \"{query}\", EVENTS = \"{events}\";\n{LIVE_JS}</script></body></html>",
            st.summary(),
            qs = html_escape(&question(&query::to_string(self.query, self.query.offset))),
            query = query::to_string(self.query, self.query.offset),
            eqs = html_escape(&question(&query::events_string(self.query))),
            events = query::events_string(self.query),
            mine = self.your_id,
        );
        h
    }

    fn counts_html(&self, h: &mut String) {
        let c = &self.page.counts;
        let _ = write!(h, "<p>{} rows in all. By state:", c.total);
        for (state, n) in &c.by_state {
            let _ = write!(h, " <a href=\"/?state={state}\">{state}</a> {n};");
        }
        h.push_str("</p><p>Open connections by local port:");
        for (port, n) in &c.by_port {
            let _ = write!(h, " <a href=\"/?port={port}\">{port}</a> {n};");
        }
        let _ = write!(
            h,
            "</p><p>{} remote host{}; the busiest:",
            c.remote_hosts,
            if c.remote_hosts == 1 { "" } else { "s" }
        );
        for (host, n) in &c.by_remote {
            let _ = write!(h, " <a href=\"/?remote={host}\">{host}</a> {n};");
        }
        h.push_str("</p>");
    }

    fn filter_form(&self, h: &mut String) {
        let q = self.query;
        h.push_str(
            "<form id=\"filter\" method=\"get\" action=\"/\"><label>state <select name=\"state\">\
             <option value=\"\">any</option>",
        );
        for s in STATES {
            let sel = if q.state == Some(s) { " selected" } else { "" };
            let _ = write!(h, "<option{sel}>{s}</option>");
        }
        let remote = match q.remote {
            Some(Remote::Host(ip)) => ip.to_string(),
            Some(Remote::Addr(a)) => a.to_string(),
            None => String::new(),
        };
        let _ = write!(
            h,
            "</select></label> <label>local port <input name=\"port\" size=\"5\" value=\"{}\"></label> \
             <label>remote <input name=\"remote\" size=\"22\" value=\"{}\"></label> \
             <label>rows <input name=\"limit\" size=\"4\" value=\"{}\"></label> \
             <button>show</button> <a href=\"/\">all</a></form>",
            q.port.map(|p| p.to_string()).unwrap_or_default(),
            html_escape(&remote),
            q.limit,
        );
    }

    fn pager_html(&self, h: &mut String) {
        let (q, p) = (self.query, self.page);
        let first = if p.sockets.is_empty() {
            0
        } else {
            p.offset + 1
        };
        let _ = write!(
            h,
            "Rows {first}&ndash;{} of {} matching ({} in all).",
            p.offset + p.sockets.len(),
            p.counts.matched,
            p.counts.total
        );
        if p.offset > 0 {
            let newer = p.offset.saturating_sub(p.limit);
            let _ = write!(
                h,
                " <a id=\"newer\" href=\"/{}\">&larr; newer</a>",
                html_escape(&question(&query::to_string(q, newer)))
            );
        }
        if p.offset + p.sockets.len() < p.counts.matched {
            let _ = write!(
                h,
                " <a id=\"older\" href=\"/{}\">older &rarr;</a>",
                html_escape(&question(&query::to_string(q, p.offset + p.limit)))
            );
        }
    }
}

/// `?` and the query string, or nothing for an empty one.
fn question(qs: &str) -> String {
    if qs.is_empty() {
        String::new()
    } else {
        format!("?{qs}")
    }
}

const SOCKET_HEADINGS: &str = "<tr><th>socket</th><th>local</th><th>remote</th><th>state</th>\
    <th>held by</th><th>served by</th></tr>";
const LISTENER_HEADINGS: &str = "<tr><th>socket</th><th>local</th><th>SYN queue</th>\
    <th>accept queue</th><th>backlog</th></tr>";

fn socket_row(h: &mut String, s: &SocketInfo, mine: bool) {
    h.push_str(if mine { "<tr class=\"mine\">" } else { "<tr>" });
    h.push_str("<td><a href=\"/story/");
    push_num(h, s.id.0);
    h.push_str("\">#");
    push_num(h, s.id.0);
    h.push_str("</a></td><td>");
    push_addr(h, &s.quad.local);
    h.push_str("</td><td>");
    push_addr(h, &s.quad.remote);
    h.push_str("</td><td>");
    h.push_str(s.state);
    h.push_str("</td><td>");
    h.push_str(s.owner);
    h.push_str("</td><td>");
    push_escaped(h, s.served_by.as_deref().unwrap_or(""));
    h.push_str("</td></tr>");
}

/// `/parallel`: six frames loaded at once. HTTP/1.1 carries one request at a
/// time per connection and each frame's answer is slow (`/you?delay=…`), so
/// the browser opens several connections to the same port: several client
/// ports, several sockets, one listener.
pub fn parallel_html() -> String {
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>portlab: six frames at once</title><style>{CSS}\
         iframe{{width:30em;height:3.2em;border:1px solid #ccc;display:block;margin:.3em 0}}</style>\
         </head><body><h1>Six frames, loaded at once</h1>\
         <p>Each frame below is a separate request, answered after a short delay. One HTTP/1.1 \
         connection carries one request at a time, so your browser opens several connections to \
         port 80 at the same moment &mdash; each from its own client port, each its own socket \
         on the stack, all through one listening socket. Each frame says which 4-tuple it came \
         over. <a href=\"/\">The connection table</a> shows them.</p>"
    );
    for i in 1..=6 {
        let _ = write!(h, "<iframe src=\"/you?delay=600&amp;frame={i}\"></iframe>");
    }
    h.push_str("</body></html>\n");
    h
}

/// `/you`: a one-line page naming the connection it came over.
pub fn you_html(you: Quad, id: u64) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><style>{CSS}\
         body{{margin:.3em}}</style></head><body><code>{} &rarr; {}</code> socket #{id}</body></html>\n",
        you.remote, you.local
    )
}

/// Keeps the page live. Events arrive as they happen over one Server-Sent
/// Events stream (`/events`, filtered by the page's port and remote): each
/// goes to the feed, a new socket becomes a row at once (on the first page),
/// and a change of state changes its row. The counts and the rows are
/// redrawn from the JSON of the page's own query after events (at most once
/// a second) and every five seconds; without the stream, every second. A
/// row added by an event keeps, as `data-syn` and `data-shown`, the time of
/// its SYN (the stack's clock) and the moment it appeared here: the tests
/// read them to measure how long a SYN takes to reach the page. No external
/// scripts: the lab has no internet.
const LIVE_JS: &str = r#"
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const HEAD = '<tr><th>socket</th><th>local</th><th>remote</th><th>state</th><th>held by</th><th>served by</th></tr>';
const seen = new Map();   // socket id -> {syn, shown}: rows that events added
const synAt = new Map();  // remote -> ts of its last SYN
const attrs = id => { const t = seen.get(id); return t ? ` data-syn="${t.syn}" data-shown="${t.shown}"` : ''; };
const row = s => `<tr id="row-${s.id}"${attrs(s.id)}${s.id === MINE ? ' class="mine"' : ''}><td><a href="/story/${s.id}">#${s.id}</a></td><td>${esc(s.local)}</td><td>${esc(s.remote)}</td><td>${esc(s.state)}</td><td>${esc(s.owner)}</td><td>${esc(s.served_by)}</td></tr>`;
const link = (k, v, n) => ` <a href="/?${k}=${encodeURIComponent(v)}">${esc(v)}</a> ${n};`;
const FIRST_PAGE = !/(^|&)(offset|state)=/.test(QUERY);
let last = null, dirty = false, lastRefresh = 0, streaming = false;
async function refresh() {
  lastRefresh = Date.now();
  dirty = false;
  try {
    const r = await fetch('/connections.json' + (QUERY ? '?' + QUERY : ''), {cache: 'no-store'});
    const d = await r.json();
    const open = d.open_on_port;
    document.getElementById('count').textContent = open;
    document.getElementById('noun').textContent = open === 1 ? 'connection' : 'connections';
    if (d.you.state) document.getElementById('mine').innerHTML = HEAD + row(d.you);
    let rows = '<tr><th>socket</th><th>local</th><th>SYN queue</th><th>accept queue</th><th>backlog</th></tr>';
    for (const l of d.listeners) rows += `<tr><td>#${l.id}${l.reuse ? ' (reuse-port)' : ''}</td><td>${esc(l.local)}</td><td>${l.syn_queue}${l.syn_cookies ? ' (full: SYN cookies)' : ''}</td><td>${l.accept_queue}</td><td>${l.backlog}</td></tr>`;
    document.getElementById('listeners').innerHTML = rows;
    const c = d.counts;
    let counts = `<p>${c.total} rows in all. By state:`;
    for (const [k, n] of Object.entries(c.by_state)) counts += link('state', k, n);
    counts += '</p><p>Open connections by local port:';
    for (const [k, n] of Object.entries(c.by_port)) counts += link('port', k, n);
    counts += `</p><p>${c.remote_hosts} remote host${c.remote_hosts === 1 ? '' : 's'}; the busiest:`;
    for (const h of c.by_remote) counts += link('remote', h.host, h.count);
    document.getElementById('counts').innerHTML = counts + '</p>';
    const p = d.page, first = d.sockets.length ? p.offset + 1 : 0;
    const pager = document.getElementById('pager');
    const links = [...pager.querySelectorAll('a')].map(a => ' ' + a.outerHTML).join('');
    pager.innerHTML = `Rows ${first}&ndash;${p.offset + d.sockets.length} of ${c.matched} matching (${c.total} in all).` + links;
    document.getElementById('sockets').innerHTML = HEAD + d.sockets.map(row).join('');
    const st = d.stats, now = Date.now();
    let rate = '';
    if (last) rate = `, ${((st.sockets_created - last.n) * 1000 / (now - last.t)).toFixed(1)} new connections/s`;
    last = {n: st.sockets_created, t: now};
    document.getElementById('stats').textContent = `SYNs seen ${st.syns}, dropped ${st.syns_dropped}, handshakes held ${st.handshakes_held}, resets sent ${st.resets_sent}, sockets created ${st.sockets_created}, TIME-WAIT reused ${st.time_wait_reused}, SYN cookies sent ${st.cookies_sent} (validated ${st.cookies_validated}, rejected ${st.cookies_rejected})${rate}.`;
  } catch (e) { /* the stack stopped, or a request failed: try again */ }
}
function feed(kind, e) {
  const ol = document.getElementById('feed');
  const li = document.createElement('li');
  const t = new Date(e.ts * 1000).toISOString().slice(11, 23);
  const who = e.remote ? ` ${e.remote} \u2192 ${e.local}` : (e.local ? ` ${e.local}` : '');
  const extra = e.to ? ` ${e.from} \u2192 ${e.to}` : e.by ? ` by ${e.by}` : e.reason ? ` (${e.reason})` : '';
  li.textContent = `${t} ${kind}${e.id !== undefined ? ' #' + e.id : ''}${who}${extra}`;
  ol.insertBefore(li, ol.firstChild);
  while (ol.children.length > 30) ol.removeChild(ol.lastChild);
}
function onEvent(kind, e) {
  feed(kind, e);
  dirty = true;
  if (kind === 'syn') synAt.set(e.remote, e.ts);
  if (kind === 'socket_created' && FIRST_PAGE && !document.getElementById('row-' + e.id)) {
    seen.set(e.id, {syn: synAt.get(e.remote) ?? e.ts, shown: Date.now() / 1000});
    const table = document.getElementById('sockets');
    const tr = table.insertRow(1);
    tr.outerHTML = row({id: e.id, local: e.local, remote: e.remote, state: 'SYN-RECEIVED', owner: e.origin ? 'application' : 'syn queue', served_by: ''});
  }
  if (kind === 'state') {
    const tr = document.getElementById('row-' + e.id);
    if (tr) tr.cells[3].textContent = e.to;
  }
}
const KINDS = ['syn', 'syn_dropped', 'port_chosen', 'socket_created', 'accepted', 'state', 'closed', 'rst_sent',
  'handshake_held', 'nagle_held', 'nagle_released', 'time_wait_reused', 'time_wait_expired', 'listen', 'listen_closed'];
if (window.EventSource) {
  const es = new EventSource('/events' + (EVENTS ? '?' + EVENTS : ''));
  es.onopen = () => { streaming = true; };
  es.onerror = () => { streaming = false; };
  for (const k of KINDS) es.addEventListener(k, m => { try { onEvent(k, JSON.parse(m.data)); } catch (x) {} });
}
setInterval(() => {
  const since = Date.now() - lastRefresh;
  if (!streaming || (dirty && since >= 1000) || since >= 5000) refresh();
}, 250);
"#;

pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}\
    .you{font-size:1.3em;background:#eef6ff;padding:.6em;border-left:4px solid #2a6fdb}\
    table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em;\
    font-family:ui-monospace,monospace;font-size:.9em}tr.mine{background:#fff3b0;font-weight:bold}\
    .stats{color:#555}";

pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_escaped(&mut o, s);
    o
}

/// Appends `s` with `&`, `<`, `>` and `"` escaped: one pass over its bytes
/// (all four are ASCII, so every cut is on a character boundary), and no
/// copy of its own when nothing needs escaping (the page's rows rarely do).
pub fn push_escaped(o: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => continue,
        };
        o.push_str(&s[start..i]);
        o.push_str(escaped);
        start = i + 1;
    }
    o.push_str(&s[start..]);
}

/// Appends a number (without `fmt`'s machinery: a page writes hundreds).
fn push_num(o: &mut String, n: impl itoa::Integer) {
    o.push_str(itoa::Buffer::new().format(n));
}

/// Appends an address as `Display` writes it, IPv4 without `fmt`: the
/// digits go into a buffer on the stack and the string grows once (a page
/// writes two addresses a row, and a push per octet was 8% of its cost).
fn push_addr(o: &mut String, a: &std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => {
            // "255.255.255.255:65535" is 21 bytes.
            let mut buf = [0u8; 21];
            let mut n = 0;
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                n += put_digits(&mut buf[n..], u32::from(octet));
            }
            buf[n] = b':';
            n += 1;
            n += put_digits(&mut buf[n..], u32::from(v4.port()));
            // Only ASCII digits, dots and a colon were written.
            o.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
        }
        std::net::SocketAddr::V6(_) => {
            let _ = write!(o, "{a}");
        }
    }
}

/// Writes `v` (at most 65535) in decimal at the start of `buf`; returns
/// how many digits it wrote.
fn put_digits(buf: &mut [u8], v: u32) -> usize {
    let mut digits = [0u8; 5];
    let (mut v, mut len) = (v, 0);
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[i] = *d;
    }
    len
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.page.you {
            Some(row) => m.serialize_entry("you", row)?,
            None => m.serialize_entry(
                "you",
                &Visitor {
                    id: self.your_id,
                    quad: self.you,
                },
            )?,
        }
        m.serialize_entry("model", self.model)?;
        m.serialize_entry("open_on_port", &self.open_on_port())?;
        m.serialize_entry("event_streams", &Streams(&self.streams))?;
        self.page.serialize_fields(&mut m)?;
        m.end()
    }
}

/// The visitor's own connection when the page holds no row for it (yet):
/// its id and its 4-tuple.
struct Visitor {
    id: u64,
    quad: Quad,
}

impl Serialize for Visitor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("local", &Shown(self.quad.local))?;
        m.serialize_entry("remote", &Shown(self.quad.remote))?;
        m.end()
    }
}

/// The `/events` streams served so far: open, opened, closed, dropped, and
/// batches lost to a slow reader.
struct Streams<'a>(&'a StreamCounts);

impl Serialize for Streams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let st = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("open", &st.open)?;
        m.serialize_entry("opened", &st.opened)?;
        m.serialize_entry("closed", &st.closed)?;
        m.serialize_entry("dropped", &st.dropped)?;
        m.serialize_entry("lost_batches", &st.lost_batches)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portlab::SocketId;
    use portlab::engine::netstack::ListenerInfo;
    use portlab::observe::table::{TableIndex, TcpState as State};

    fn row(id: u64, p: u16, state: &'static str, owner: &'static str) -> SocketInfo {
        SocketInfo {
            id: SocketId(id),
            quad: Quad::new(
                "10.203.80.2:80".parse().unwrap(),
                format!("10.203.80.1:{p}").parse().unwrap(),
            ),
            state,
            owner,
            accepted_by: Some("main".into()),
            served_by: Some("conn-<1>".into()),
            recv_queue: 0,
            send_queue: 0,
        }
    }

    /// A table of three rows, paged as the stack pages it.
    fn page(q: &Query) -> TablePage {
        let rows = [
            row(1, 51234, "ESTABLISHED", "application"),
            row(2, 51236, "ESTABLISHED", "application"),
            row(3, 40000, "TIME-WAIT", "time-wait"),
        ];
        let mut index = TableIndex::default();
        for r in &rows {
            let state = match r.state {
                "TIME-WAIT" => State::TimeWait,
                _ => State::Established,
            };
            index.insert(r.id, r.quad, state);
        }
        let (counts, page) = index.select(q, &[]);
        TablePage {
            listeners: vec![ListenerInfo {
                id: SocketId(100),
                reuse: false,
                local: "0.0.0.0:80".parse().unwrap(),
                backlog: 511,
                syn_queue: 0,
                accept_queue: 1,
                syn_cookies: true,
            }],
            counts,
            you: q.you.map(|y| rows[y.0 as usize - 1].clone()),
            sockets: page
                .iter()
                .map(|id| rows[id.0 as usize - 1].clone())
                .collect(),
            offset: q.offset,
            limit: q.limit,
            stats: Default::default(),
        }
    }

    fn view<'a>(page: &'a TablePage, q: &'a Query) -> View<'a> {
        View {
            you: page.you.as_ref().unwrap().quad,
            your_id: 1,
            model: "thread-per-connection",
            page,
            query: q,
            streams: StreamCounts::default(),
        }
    }

    #[test]
    fn addresses_and_text_are_written_as_display_and_escaping_write_them() {
        for a in [
            "10.203.80.1:51234",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.20.199.9:9",
            "100.0.10.1:10000",
            "[fd00::1]:80",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            let mut o = String::new();
            push_addr(&mut o, &a);
            assert_eq!(o, a.to_string());
        }
        assert_eq!(
            html_escape("conn-<1> & \"x\">"),
            "conn-&lt;1&gt; &amp; &quot;x&quot;&gt;"
        );
        assert_eq!(html_escape("plain"), "plain");
        assert_eq!(html_escape(""), "");
    }

    #[test]
    fn page_names_the_visitors_four_tuple_and_counts_open_connections() {
        let q = Query {
            you: Some(SocketId(1)),
            ..Query::default()
        };
        let p = page(&q);
        let v = view(&p, &q);
        let html = v.html();
        assert!(html.contains("You are <b>10.203.80.1:51234</b> talking to <b>10.203.80.2:80</b>"));
        assert!(html.contains(
            "one of <b id=\"count\">2</b> <span id=\"noun\">connections</span> on port 80"
        ));
        assert!(html.contains(
            "<table id=\"mine\"><tr><th>socket</th><th>local</th><th>remote</th><th>state</th>\
             <th>held by</th><th>served by</th></tr><tr class=\"mine\"><td><a href=\"/story/1\">#1</a>"
        ), "the visitor's own row comes first");
        assert!(html.contains("conn-&lt;1&gt;"), "names are escaped");
        assert!(html.contains("Rows 1&ndash;3 of 3 matching (3 in all)."));
        let newest = html.find("/story/3").unwrap();
        assert!(newest < html.rfind("/story/2").unwrap(), "newest first");
        let json = v.json();
        assert!(json.starts_with(
            r#"{"you":{"id":1,"local":"10.203.80.2:80","remote":"10.203.80.1:51234","state":"ESTABLISHED""#
        ));
        assert!(json.contains(r#""accept_queue":1"#));
        assert!(json.contains(
            r#""counts":{"total":3,"matched":3,"by_state":{"ESTABLISHED":2,"TIME-WAIT":1},"by_port":{"80":2},"by_remote":[{"host":"10.203.80.1","count":3}],"remote_hosts":1},"page":{"offset":0,"limit":50,"returned":3}"#
        ), "{json}");
    }

    #[test]
    fn a_filtered_page_links_to_the_pages_around_it() {
        let q = Query {
            state: Some("ESTABLISHED"),
            limit: 1,
            offset: 1,
            you: Some(SocketId(1)),
            ..Query::default()
        };
        let p = page(&q);
        let html = view(&p, &q).html();
        assert!(
            html.contains("Rows 2&ndash;2 of 2 matching (3 in all)."),
            "{html}"
        );
        assert!(html.contains("<a id=\"newer\" href=\"/?state=ESTABLISHED&amp;limit=1\">"));
        assert!(!html.contains("id=\"older\""), "no older page");
        assert!(html.contains("<option selected>ESTABLISHED</option>"));
        assert!(html.contains("QUERY = \"state=ESTABLISHED&limit=1&offset=1\""));
    }
}
