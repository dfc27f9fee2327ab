//! A bounded HTTP/1.1 request parser (on `httparse`) and response writer.
//!
//! Bounded: the request head may be at most [`MAX_HEAD`] bytes and a body at
//! most [`MAX_BODY`]; anything else is a `400`/`413`/`431` and the connection
//! closes. The parser is pure (bytes in, request out) so it is easy to test.

use std::io::Write as _;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body accepted (and discarded).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// HTTP/1.1 (true) or HTTP/1.0 (false).
    pub http11: bool,
    /// Whether the client wants the connection kept open afterwards.
    pub keep_alive: bool,
    pub content_length: usize,
}

/// Why a request was refused; each maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    BadRequest,
    HeadTooLarge,
    BodyTooLarge,
}

impl HttpError {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HttpError::BadRequest => (400, "Bad Request"),
            HttpError::HeadTooLarge => (431, "Request Header Fields Too Large"),
            HttpError::BodyTooLarge => (413, "Content Too Large"),
        }
    }
}

/// At most this many header lines; more is a `431`, as a head too large.
pub const MAX_HEADERS: usize = 64;

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete,
/// read more. `Ok(Some((req, n)))`: the head is the first `n` bytes.
///
/// The request line and the headers are read by `httparse` (the parser
/// hyper uses); on top of it this server refuses what it does not serve: a
/// method that is not a plain word, a target that is not a path, a body
/// larger than [`MAX_BODY`] or in chunks, a head larger than [`MAX_HEAD`].
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let end = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::BadRequest);
    };
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) || !target.starts_with('/') {
        return Err(HttpError::BadRequest);
    }
    let http11 = version == 1;
    let mut keep_alive = http11;
    let mut content_length = 0usize;
    for h in parsed.headers.iter() {
        let value = || {
            std::str::from_utf8(h.value)
                .map(str::trim)
                .map_err(|_| HttpError::BadRequest)
        };
        if h.name.eq_ignore_ascii_case("connection") {
            let v = value()?.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value()?.parse().map_err(|_| HttpError::BadRequest)?;
            if content_length > MAX_BODY {
                return Err(HttpError::BodyTooLarge);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies are not needed by anything we serve.
            return Err(HttpError::BadRequest);
        }
    }
    Ok(Some((
        Request {
            method: method.to_string(),
            target: target.to_string(),
            http11,
            keep_alive,
            content_length,
        },
        end,
    )))
}

/// The parser's promises, asserted for any input: the fuzz target and the
/// fixed-seed sweep below call this. A complete head is the first `n` bytes,
/// ends with an empty line (CRLF, or a bare LF as RFC 9112 lets a server
/// accept) and parses the same on its own and with anything
/// after it; a head complete in a prefix parses the same in the whole; an
/// incomplete head is within the limit.
#[cfg(any(test, fuzzing))]
pub fn check_parser(data: &[u8]) {
    let whole = parse(data);
    match &whole {
        Ok(Some((req, n))) => {
            assert!(*n <= data.len() && *n <= MAX_HEAD, "head of {n} bytes");
            assert!(data[..*n].ends_with(b"\n\r\n") || data[..*n].ends_with(b"\n\n"));
            assert!(req.target.starts_with('/') && req.content_length <= MAX_BODY);
            assert_eq!(
                parse(&data[..*n]),
                whole,
                "the head alone parses differently"
            );
        }
        Ok(None) => assert!(
            data.len() <= MAX_HEAD,
            "{} bytes and no verdict",
            data.len()
        ),
        Err(_) => {}
    }
    if let Some(&first) = data.first() {
        let cut = usize::from(first) * data.len() / 256;
        if let Ok(Some(_)) = parse(&data[..cut]) {
            assert_eq!(
                parse(&data[..cut]),
                whole,
                "a complete prefix parses differently"
            );
        }
    }
}

/// A response ready to be written.
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(
        status: u16,
        reason: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Self {
        Response {
            status,
            reason,
            content_type,
            body,
        }
    }

    pub fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Response::new(
            status,
            reason,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    /// Head and body, ready for one write (one segment when it fits).
    pub fn to_bytes(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        // The head is under 256 bytes: head and body in one allocation.
        let body = if head_only { 0 } else { self.body.len() };
        let mut out = Vec::with_capacity(256 + body);
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             Server: portlab\r\nConnection: {}\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_request_parses() {
        let raw = b"GET /connections.json HTTP/1.1\r\nHost: 10.203.80.2\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\nextra";
        let (req, n) = parse(raw).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/connections.json");
        assert!(req.keep_alive);
        assert_eq!(&raw[n..], b"extra");
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn connection_close_and_http10() {
        let (r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
    }

    /// Fixed-seed sweep of the fuzz target's check: mutated requests.
    #[test]
    fn parser_sweep_keeps_its_promises() {
        let seeds: [&[u8]; 3] = [
            b"GET /you?delay=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 65536\r\n\r\nbody",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        let mut state = 1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let mut v = seeds[i % 3].to_vec();
            for _ in 0..next() % 4 {
                let at = (next() as usize) % v.len();
                match next() % 3 {
                    0 => v[at] = next() as u8,
                    1 => v.insert(at, b"\r\n: /"[(next() % 5) as usize]),
                    _ => {
                        v.remove(at);
                    }
                }
            }
            if i % 500 == 0 {
                v.resize(MAX_HEAD + 3, b'a');
            }
            check_parser(&v);
        }
    }

    #[test]
    fn a_bare_lf_ends_lines_as_rfc_9112_allows() {
        let raw = b"GET /you HTTP/1.1\nHost: a\n\nrest";
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(r.target, "/you");
        assert_eq!(&raw[n..], b"rest");
    }

    #[test]
    fn too_many_headers_is_a_head_too_large() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(parse(&raw), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn a_method_that_is_not_a_word_or_a_target_that_is_not_a_path_is_refused() {
        assert_eq!(
            parse(b"M-SEARCH / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        assert_eq!(
            parse(b"GET http://a/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(parse(b"hello\r\n\r\n"), Err(HttpError::BadRequest));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(HttpError::BadRequest));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(HttpError::BadRequest)
        );
        assert_eq!(
            parse(&vec![b'a'; MAX_HEAD + 1]),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(HttpError::BodyTooLarge)
        );
    }
}
