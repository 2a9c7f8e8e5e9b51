//! A minimal HTTP/1.1 client over a Unix socket: one request per
//! connection (`Connection: close`), `Content-Length` or read-to-end bodies.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vpmu::util::file::{read_to_end_bounded, FileError};

/// A response: status and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the response.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body.unwrap_or(&[]));
    s.write_all(&out)?;
    let mut buf = Vec::new();
    read_to_end_bounded(s, MAX_RESPONSE_BYTES, &mut buf).map_err(|e| match e {
        FileError::Io(e) => e,
        other => bad(&format!("response {other}")),
    })?;
    parse_response(&buf)
}

/// Largest response read: far above what a VM of 16 vCPUs answers (tens of
/// KiB), so a broken or hostile server cannot make `vmm stats` eat memory.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Parses a complete response (status line, headers, body).
pub fn parse_response(buf: &[u8]) -> io::Result<HttpResponse> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("truncated HTTP response")),
        Err(e) => return Err(bad(&format!("malformed HTTP response: {e}"))),
    };
    let status = resp.code.ok_or_else(|| bad("no status"))?;
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let rest = &buf[n..];
    let body = match len {
        Some(l) if l <= rest.len() => rest[..l].to_vec(),
        Some(_) => return Err(bad("truncated HTTP body")),
        None => rest.to_vec(),
    };
    Ok(HttpResponse { status, body })
}

/// GETs `path` and decodes a 200 JSON body.
pub fn get_json<T: serde::de::DeserializeOwned>(sock: &Path, path: &str) -> io::Result<T> {
    let r = request(sock, "GET", path, None)?;
    if r.status != 200 {
        let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
        return Err(io::Error::other(format!("GET {path}: {} {msg}", r.status)));
    }
    serde_json::from_slice(&r.body).map_err(|e| bad(&format!("GET {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn an_endless_response_is_cut_at_the_cap() {
        let dir = std::env::temp_dir().join(format!("vmm-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("endless.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let chunk = vec![b'x'; 1 << 20];
            // Far more than the cap; stops when the client hangs up.
            for _ in 0..((4 * MAX_RESPONSE_BYTES) >> 20) {
                if c.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let e = request(&sock, "GET", "/v1/vm", None).unwrap_err();
        assert!(e.to_string().contains("response larger than"), "{e}");
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
