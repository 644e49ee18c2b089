//! The HTTP endpoint: `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Owns one listening socket and the thread that serves it: every client
//! at once, on non-blocking sockets (`Connection: close`; a scrape is small
//! and rare), each with a total deadline for its whole exchange and at most
//! [`MAX_CLIENTS`] of them, the oldest dropped first. A client that
//! trickles its request a byte at a time, or never reads the answer, delays
//! no other client's `/healthz`.
//! Request parsing and routing are pure functions over bytes; the thread only
//! moves bytes. It must not record metrics or health facts, only read them.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{Health, Metrics};

/// Content type of `/metrics`, as the Go worker's handler sends it.
pub const METRICS_CONTENT_TYPE: &str =
    "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";
const TEXT: &str = "text/plain; charset=utf-8";
/// Largest request head read; anything longer is refused.
const MAX_HEAD: usize = 8192;
/// The longest one client's exchange (request and response) may take.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// Clients served at once; a newer one pushes the oldest out.
const MAX_CLIENTS: usize = 64;

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
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let mut clients = Clients::default();
            while !flag.load(Ordering::SeqCst) {
                if let Err(e) = clients.wait(&listener, Instant::now()) {
                    warn!("metrics endpoint: waiting for clients failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                clients.accept(&listener, Instant::now());
                clients.serve(&metrics, &health, Instant::now());
            }
        })?;
    Ok(ServerHandle {
        addr: local,
        stopping,
        thread: Some(thread),
    })
}

/// One client's exchange: its request head as it arrives, then the
/// response as it leaves.
struct Client {
    stream: TcpStream,
    /// When the whole exchange must be over.
    deadline: Instant,
    head: Vec<u8>,
    /// The response, once the head is complete.
    out: Option<Vec<u8>>,
    written: usize,
}

/// Every open client connection, served together from one thread with
/// non-blocking sockets: a client that trickles its request (or never
/// reads the answer) holds nothing but its own entry, which goes at its
/// deadline or when [`MAX_CLIENTS`] newer ones push it out.
#[derive(Default)]
struct Clients(std::collections::VecDeque<Client>);

impl Clients {
    /// Blocks until the listener or a client is ready, or the nearest
    /// client deadline passes.
    fn wait(&self, listener: &TcpListener, now: Instant) -> io::Result<()> {
        let mut fds = Vec::with_capacity(self.0.len() + 1);
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &self.0 {
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: if c.out.is_some() {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            });
        }
        // With no client there is nothing to time out: block until one
        // connects (a stop connects to wake the thread).
        let ms = match self
            .0
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
        {
            Some(next) => next.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
            None => -1,
        };
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes every pending connection; past [`MAX_CLIENTS`] the oldest
    /// client is dropped to make room.
    fn accept(&mut self, listener: &TcpListener, now: Instant) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.0.len() >= MAX_CLIENTS {
                        self.0.pop_front();
                        debug!("metrics endpoint: {MAX_CLIENTS} clients open; dropped the oldest");
                    }
                    self.0.push_back(Client {
                        stream,
                        deadline: now + EXCHANGE_DEADLINE,
                        head: Vec::new(),
                        out: None,
                        written: 0,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("metrics endpoint: accepting a connection failed: {e}");
                    // Back off so a persistent error (e.g. out of file descriptors) can't spin.
                    thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    /// Moves every client as far as its socket allows; drops the finished,
    /// the failed and those past their deadline.
    fn serve(&mut self, metrics: &Metrics, health: &Health, now: Instant) {
        self.0.retain_mut(|c| {
            if now >= c.deadline {
                debug!(
                    "metrics endpoint: a client took longer than {EXCHANGE_DEADLINE:?}; dropped"
                );
                return false;
            }
            match c.step(metrics, health) {
                Ok(done) => !done,
                Err(e) => {
                    debug!("metrics endpoint: a client connection failed: {e}");
                    false
                }
            }
        });
    }
}

impl Client {
    /// Reads what has arrived, answers once the head is complete, writes
    /// what the socket takes. True when the exchange is over.
    fn step(&mut self, metrics: &Metrics, health: &Health) -> io::Result<bool> {
        if self.out.is_none() {
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) if self.head.is_empty() => return Ok(true),
                    Ok(0) => break,
                    Ok(n) => {
                        self.head.extend_from_slice(&buf[..n]);
                        if head_complete(&self.head) || self.head.len() > MAX_HEAD {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.out = Some(respond(&self.head, metrics, health));
            self.head = Vec::new();
        }
        let out = self.out.as_deref().unwrap_or_default();
        while self.written < out.len() {
            match self.stream.write(&out[self.written..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The bytes answering a request head (complete, cut short by the
/// client's end of sending, or too long).
fn respond(head: &[u8], metrics: &Metrics, health: &Health) -> Vec<u8> {
    if head.len() > MAX_HEAD && !head_complete(&head[..MAX_HEAD.min(head.len())]) {
        return Response::text(431, "request head too large\n").to_bytes(true);
    }
    match parse_request(head) {
        Some(req) => route(&req, metrics, health).to_bytes(req.method != "HEAD"),
        None => Response::text(400, "bad request\n").to_bytes(true),
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
    fn respond_to_heads_complete_cut_or_too_long() {
        let (m, h) = fixtures();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        assert_eq!(
            text(respond(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &m, &h)),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        // The client stopped sending after the request line: still answered.
        assert!(text(respond(b"HEAD /healthz HTTP/1.0\r\n", &m, &h)).ends_with("\r\n\r\n"));
        assert!(text(respond(b"GET", &m, &h)).starts_with("HTTP/1.1 400 Bad Request\r\n"));
        let long = [
            b"GET /healthz HTTP/1.1\r\nX: ".as_slice(),
            &[b'a'; MAX_HEAD],
        ]
        .concat();
        assert!(
            text(respond(&long, &m, &h))
                .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
        );
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
