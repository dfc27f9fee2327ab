//! What a visitor sees: its own 4-tuple and the live connection table, as
//! HTML (`GET /`) and as JSON (`GET /connections.json`).

use std::fmt::Write as _;

use portlab::Quad;
use portlab::event::push_json_string;
use portlab::netstack::Table;

/// Everything a page shows.
pub struct View<'a> {
    pub you: Quad,
    pub your_id: u64,
    pub model: &'a str,
    pub table: &'a Table,
}

impl View<'_> {
    /// Connections (not TIME-WAIT, not closing) on the visitor's local port.
    fn open_on_port(&self) -> usize {
        let port = self.you.local.port();
        self.table
            .sockets
            .iter()
            .filter(|s| {
                s.quad.local.port() == port && s.owner != "time-wait" && s.owner != "closing"
            })
            .count()
    }

    pub fn json(&self) -> String {
        let mut o = String::from("{\"you\":{");
        let _ = write!(o, "\"id\":{},\"local\":", self.your_id);
        push_json_string(&mut o, &self.you.local.to_string());
        o.push_str(",\"remote\":");
        push_json_string(&mut o, &self.you.remote.to_string());
        o.push_str("},\"model\":");
        push_json_string(&mut o, self.model);
        let _ = write!(o, ",\"open_on_port\":{},", self.open_on_port());
        self.table.json_fields(&mut o);
        o.push('}');
        o
    }

    pub fn html(&self) -> String {
        let you = &self.you;
        let port = you.local.port();
        let n = self.open_on_port();
        let mut h = String::new();
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
        h.push_str(
            "<h2>Listening sockets</h2><table id=\"listeners\"><tr><th>socket</th><th>local</th>\
             <th>SYN queue</th><th>accept queue</th><th>backlog</th></tr>",
        );
        for l in &self.table.listeners {
            let _ = write!(
                h,
                "<tr><td>#{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                l.id.0,
                if l.reuse { " (reuse-port)" } else { "" },
                l.local,
                l.syn_queue,
                l.accept_queue,
                l.backlog
            );
        }
        h.push_str(
            "</table><h2>Connection table</h2><table id=\"sockets\"><tr><th>socket</th>\
             <th>local</th><th>remote</th><th>state</th><th>held by</th><th>served by</th></tr>",
        );
        for s in &self.table.sockets {
            let mine = s.quad == *you;
            let _ = write!(
                h,
                "<tr{}><td><a href=\"/story/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                if mine { " class=\"mine\"" } else { "" },
                s.quad.local,
                s.quad.remote,
                s.state,
                s.owner,
                html_escape(s.served_by.as_deref().unwrap_or("")),
                id = s.id.0,
            );
        }
        let st = &self.table.stats;
        let _ = writeln!(
            h,
            "</table><p class=\"stats\" id=\"stats\">SYNs seen {}, dropped {}, handshakes held {}, \
             resets sent {}, sockets created {}, TIME-WAIT reused {}.</p>\
             <p>The page updates itself every second. Each socket links to its story: a diagram of \
             its handshake and teardown, and its events. The same table as JSON: \
             <a href=\"/connections.json\">/connections.json</a>.</p>\
             <script>const MINE = {mine};\n{LIVE_JS}</script></body></html>",
            st.syns,
            st.syns_dropped,
            st.handshakes_held,
            st.resets_sent,
            st.sockets_created,
            st.time_wait_reused,
            mine = self.your_id,
        );
        h
    }
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

/// Keeps the page live: fetches the table every second and redraws it, no
/// reload, no external scripts (the lab has no internet).
const LIVE_JS: &str = r#"
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
let last = null;
async function refresh() {
  try {
    const r = await fetch('/connections.json', {cache: 'no-store'});
    const d = await r.json();
    const port = d.you.local.split(':').pop();
    const open = d.sockets.filter(s => s.local.endsWith(':' + port) && s.owner !== 'time-wait' && s.owner !== 'closing').length;
    document.getElementById('count').textContent = open;
    document.getElementById('noun').textContent = open === 1 ? 'connection' : 'connections';
    let rows = '<tr><th>socket</th><th>local</th><th>SYN queue</th><th>accept queue</th><th>backlog</th></tr>';
    for (const l of d.listeners) rows += `<tr><td>#${l.id}${l.reuse ? ' (reuse-port)' : ''}</td><td>${esc(l.local)}</td><td>${l.syn_queue}</td><td>${l.accept_queue}</td><td>${l.backlog}</td></tr>`;
    document.getElementById('listeners').innerHTML = rows;
    rows = '<tr><th>socket</th><th>local</th><th>remote</th><th>state</th><th>held by</th><th>served by</th></tr>';
    for (const s of d.sockets) rows += `<tr${s.id === MINE ? ' class="mine"' : ''}><td><a href="/story/${s.id}">#${s.id}</a></td><td>${esc(s.local)}</td><td>${esc(s.remote)}</td><td>${esc(s.state)}</td><td>${esc(s.owner)}</td><td>${esc(s.served_by)}</td></tr>`;
    document.getElementById('sockets').innerHTML = rows;
    const st = d.stats, now = Date.now();
    let rate = '';
    if (last) rate = `, ${((st.sockets_created - last.n) * 1000 / (now - last.t)).toFixed(1)} new connections/s`;
    last = {n: st.sockets_created, t: now};
    document.getElementById('stats').textContent = `SYNs seen ${st.syns}, dropped ${st.syns_dropped}, handshakes held ${st.handshakes_held}, resets sent ${st.resets_sent}, sockets created ${st.sockets_created}, TIME-WAIT reused ${st.time_wait_reused}${rate}.`;
  } catch (e) { /* the stack stopped, or a request failed: try again */ }
}
setInterval(refresh, 1000);
"#;

pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}\
    .you{font-size:1.3em;background:#eef6ff;padding:.6em;border-left:4px solid #2a6fdb}\
    table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .6em;\
    font-family:ui-monospace,monospace;font-size:.9em}tr.mine{background:#fff3b0;font-weight:bold}\
    .stats{color:#555}";

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use portlab::SocketId;
    use portlab::netstack::{ListenerInfo, SocketInfo};

    fn table() -> Table {
        let q = |p: u16| {
            Quad::new(
                "10.203.80.2:80".parse().unwrap(),
                format!("10.203.80.1:{p}").parse().unwrap(),
            )
        };
        let row = |id: u64, p: u16, owner: &'static str| SocketInfo {
            id: SocketId(id),
            quad: q(p),
            state: "ESTABLISHED".into(),
            owner,
            accepted_by: Some("main".into()),
            served_by: Some("conn-<1>".into()),
            recv_queue: 0,
            send_queue: 0,
        };
        Table {
            listeners: vec![ListenerInfo {
                id: SocketId(100),
                reuse: false,
                local: "0.0.0.0:80".parse().unwrap(),
                backlog: 511,
                syn_queue: 0,
                accept_queue: 1,
            }],
            sockets: vec![
                row(1, 51234, "application"),
                row(2, 51236, "application"),
                row(3, 40000, "time-wait"),
            ],
            stats: Default::default(),
        }
    }

    #[test]
    fn page_names_the_visitors_four_tuple_and_counts_open_connections() {
        let t = table();
        let v = View {
            you: t.sockets[0].quad,
            your_id: 1,
            model: "thread-per-connection",
            table: &t,
        };
        let html = v.html();
        assert!(html.contains("You are <b>10.203.80.1:51234</b> talking to <b>10.203.80.2:80</b>"));
        assert!(html.contains(
            "one of <b id=\"count\">2</b> <span id=\"noun\">connections</span> on port 80"
        ));
        assert!(html.contains("<tr class=\"mine\"><td><a href=\"/story/1\">#1</a></td>"));
        assert!(html.contains("conn-&lt;1&gt;"), "names are escaped");
        let json = v.json();
        assert!(json.starts_with(
            r#"{"you":{"id":1,"local":"10.203.80.2:80","remote":"10.203.80.1:51234"}"#
        ));
        assert!(json.contains(r#""accept_queue":1"#));
    }
}
