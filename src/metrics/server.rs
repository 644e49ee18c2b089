//! The HTTP endpoint: `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Owns one listening socket and the thread that serves it, one short-lived
//! connection at a time (`Connection: close`; a scrape is small and rare).
//! Read and write timeouts keep a slow or silent client from wedging it.
//! Request parsing and routing are pure functions over bytes; the thread only
//! moves bytes. It must not record metrics or health facts, only read them.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, warn};

use super::{Health, Metrics};

/// Content type of `/metrics`, as the Go worker's handler sends it.
pub const METRICS_CONTENT_TYPE: &str =
    "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";
const TEXT: &str = "text/plain; charset=utf-8";
/// Largest request head read; anything longer is refused.
const MAX_HEAD: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a request the routes look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// Path without the query string.
    pub path: String,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body (omitted on the wire for `HEAD`).
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }

    /// The bytes sent, with or without the body.
    pub fn to_bytes(&self, with_body: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Reads the request line out of a request head; `None` when it is not HTTP.
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// The response to `request`, given the current metrics and health.
pub fn route(request: &Request, metrics: &Metrics, health: &Health) -> Response {
    let known = matches!(request.path.as_str(), "/metrics" | "/healthz" | "/readyz");
    if !known {
        return Response::text(404, "404 page not found\n");
    }
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "method not allowed\n");
    }
    match request.path.as_str() {
        "/metrics" => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: metrics.render(),
        },
        "/healthz" => Response::text(200, "ok\n"),
        _ => match health.ready() {
            Ok(()) => Response::text(200, "ready\n"),
            Err(why) => Response::text(503, format!("{why}\n")),
        },
    }
}

/// A running endpoint; dropping it stops the thread.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Where it listens (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        match TcpStream::connect_timeout(&wake, Duration::from_secs(2)) {
            Ok(_) => {
                let _ = thread.join();
            }
            // Without the wake-up the thread would block forever; leave it.
            Err(e) => warn!("could not wake the metrics server to stop it: {e}"),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` and serves the endpoints on a thread of their own.
pub fn serve(
    addr: impl ToSocketAddrs,
    metrics: Metrics,
    health: Health,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &metrics, &health) {
                            debug!("metrics endpoint: a client connection failed: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("metrics endpoint: accepting a connection failed: {e}");
                        // Back off so a persistent error (e.g. out of file descriptors) can't spin.
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(ServerHandle {
        addr: local,
        stopping,
        thread: Some(thread),
    })
}

fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => head,
        None => {
            let r = Response::text(431, "request head too large\n");
            return stream.write_all(&r.to_bytes(true));
        }
    };
    if head.is_empty() {
        return Ok(());
    }
    let (response, with_body) = match parse_request(&head) {
        Some(req) => (route(&req, metrics, health), req.method != "HEAD"),
        None => (Response::text(400, "bad request\n"), true),
    };
    stream.write_all(&response.to_bytes(with_body))?;
    stream.flush()
}

/// The request head up to its blank line; empty if the client sent nothing,
/// `None` if it is longer than [`MAX_HEAD`].
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerInfo;

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
        }
    }

    fn fixtures() -> (Metrics, Health) {
        let info = WorkerInfo {
            version: "1".into(),
            backend: "docker".into(),
            worker_id: "w".into(),
        };
        (Metrics::new(info, 2), Health::default())
    }

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(req("GET", "/metrics"))
        );
        assert_eq!(
            parse_request(b"HEAD /readyz HTTP/1.0\r\n\r\n"),
            Some(req("HEAD", "/readyz"))
        );
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_request(b"\x16\x03\x01 binary"), None);
        assert_eq!(parse_request(b"GET / HTTP/2 extra\r\n"), None);
    }

    #[test]
    fn routes() {
        let (m, h) = fixtures();
        assert_eq!(
            route(&req("GET", "/healthz"), &m, &h),
            Response::text(200, "ok\n")
        );
        assert_eq!(
            route(&req("GET", "/readyz"), &m, &h),
            Response::text(503, "not connected to Oz\n")
        );
        h.set_connected(true);
        h.docker_ok();
        assert_eq!(
            route(&req("GET", "/readyz"), &m, &h),
            Response::text(200, "ready\n")
        );
        assert_eq!(
            route(&req("GET", "/"), &m, &h),
            Response::text(404, "404 page not found\n")
        );
        assert_eq!(
            route(&req("POST", "/metrics"), &m, &h),
            Response::text(405, "method not allowed\n")
        );
        let metrics = route(&req("GET", "/metrics"), &m, &h);
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(metrics.body, m.render());
    }

    #[test]
    fn response_bytes() {
        let r = Response::text(503, "not connected to Oz\n");
        assert_eq!(
            String::from_utf8(r.to_bytes(true)).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 20\r\nConnection: close\r\n\r\nnot connected to Oz\n"
        );
        let r = Response::text(405, "method not allowed\n");
        assert_eq!(
            String::from_utf8(r.to_bytes(false)).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 19\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n"
        );
    }
}
