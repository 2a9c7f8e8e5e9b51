//! HTTP/1.1 framing for the API: reading one request (httparse) with caps on
//! header and body size and a deadline, and writing one response.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Most bytes of request line + headers.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most bytes of a body.
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers.
const MAX_HEADERS: usize = 32;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection closed (or idled out) between requests: just close.
    Closed,
    /// Answer with this status and message, then close.
    Respond(u16, String),
}

/// Reads requests from one connection, keeping bytes of a pipelined next
/// request.
pub struct Reader {
    buf: Vec<u8>,
    /// Whole-request deadline (slow clients sending a byte at a time).
    request_timeout: Duration,
}

fn io_to_read_error(e: &io::Error, partial: bool) -> ReadError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if partial => {
            ReadError::Respond(408, "request timed out".into())
        }
        _ => ReadError::Closed,
    }
}

impl Reader {
    pub fn new(request_timeout: Duration) -> Self {
        Reader {
            buf: Vec::with_capacity(1024),
            request_timeout,
        }
    }

    fn fill(&mut self, s: &mut impl Read, start: Instant) -> Result<(), ReadError> {
        if start.elapsed() > self.request_timeout && !self.buf.is_empty() {
            return Err(ReadError::Respond(408, "request timed out".into()));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) if self.buf.is_empty() => Err(ReadError::Closed),
            Ok(0) => Err(ReadError::Respond(400, "incomplete request".into())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(io_to_read_error(&e, !self.buf.is_empty())),
        }
    }

    /// Reads the next request. The stream's read timeout bounds each wait.
    pub fn next(&mut self, s: &mut impl Read) -> Result<Request, ReadError> {
        let start = Instant::now();
        // Head.
        let (head_len, method, path, content_length, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    if n > MAX_HEAD {
                        return Err(ReadError::Respond(431, "request header too large".into()));
                    }
                    let method = req.method.unwrap_or("").to_string();
                    let target = req.path.unwrap_or("");
                    let path = target.split('?').next().unwrap_or("").to_string();
                    let http10 = req.version == Some(0);
                    let mut close = http10;
                    let mut length: Option<usize> = None;
                    for h in req.headers.iter() {
                        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v: usize = value.parse().map_err(|_| {
                                ReadError::Respond(400, "invalid Content-Length".into())
                            })?;
                            if length.is_some_and(|l| l != v) {
                                return Err(ReadError::Respond(
                                    400,
                                    "conflicting Content-Length".into(),
                                ));
                            }
                            length = Some(v);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(ReadError::Respond(
                                400,
                                "Transfer-Encoding is not supported; send Content-Length".into(),
                            ));
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = value.to_ascii_lowercase();
                            if v.contains("close") {
                                close = true;
                            } else if v.contains("keep-alive") {
                                close = false;
                            }
                        }
                    }
                    if !target.starts_with('/') {
                        return Err(ReadError::Respond(
                            400,
                            "request target must be a path".into(),
                        ));
                    }
                    break (n, method, path, length.unwrap_or(0), close);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() >= MAX_HEAD {
                        return Err(ReadError::Respond(431, "request header too large".into()));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Respond(431, "too many request headers".into()))
                }
                Err(e) => return Err(ReadError::Respond(400, format!("malformed request: {e}"))),
            }
            self.fill(s, start)?;
        };
        if content_length > MAX_BODY {
            return Err(ReadError::Respond(
                413,
                format!("request body larger than {MAX_BODY} bytes"),
            ));
        }
        // Body.
        while self.buf.len() < head_len + content_length {
            self.fill(s, start)?;
        }
        let body = self.buf[head_len..head_len + content_length].to_vec();
        self.buf.drain(..head_len + content_length);
        Ok(Request {
            method,
            path,
            body,
            close,
        })
    }
}

/// A response to send.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Allow` header (405).
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: "application/json",
            body,
            allow: None,
        }
    }

    pub fn error(status: u16, msg: &str) -> Self {
        let body = serde_json::to_vec(&super::model::ErrorBody {
            error: msg.to_string(),
        })
        .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
        Response::json(status, body)
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `r`; `close` adds `Connection: close`.
pub fn write_response(w: &mut impl Write, r: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if let Some(allow) = r.allow {
        head.push_str("Allow: ");
        head.push_str(allow);
        head.push_str("\r\n");
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        Reader::new(Duration::from_secs(1)).next(&mut &bytes[..])
    }

    #[test]
    fn parses_and_caps() {
        let r = read(b"PUT /v1/x?y=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), &r.body[..]),
            ("PUT", "/v1/x", &b"{}"[..])
        );
        assert!(!r.close);
        assert!(matches!(
            read(b"GARBAGE\x01\r\n\r\n"),
            Err(ReadError::Respond(400, _))
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(matches!(
            read(big.as_bytes()),
            Err(ReadError::Respond(431, _))
        ));
        assert!(matches!(
            read(b"PUT / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"),
            Err(ReadError::Respond(413, _))
        ));
        assert!(matches!(
            read(b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Respond(400, _))
        ));
        assert!(matches!(read(b""), Err(ReadError::Closed)));
        assert!(matches!(read(b"GET / HT"), Err(ReadError::Respond(400, _))));
    }

    #[test]
    fn pipelined_requests() {
        let bytes = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
        let mut s = &bytes[..];
        let mut r = Reader::new(Duration::from_secs(1));
        assert_eq!(r.next(&mut s).unwrap().path, "/a");
        let b = r.next(&mut s).unwrap();
        assert_eq!(b.path, "/b");
        assert!(b.close);
        assert!(matches!(r.next(&mut s), Err(ReadError::Closed)));
    }
}
