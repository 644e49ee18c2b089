//! One HTTP/1.1 request and its response over a daemon connection, plus the
//! keep-alive pool and the [`AbortSlot`] that lets another thread cut a long
//! call short.
//!
//! Framing comes from the crate's codec (`src/http.rs`), sockets from
//! `transport.rs`; this layer only moves bytes between them. It knows
//! nothing of Engine API paths or JSON shapes (see `api.rs`).
//!
//! This file owns the pool and the retry of a request a stale pooled
//! connection swallowed; the abort hook ([`abort`]), the response and its
//! body ([`body`]) and the bytes of one exchange ([`exchange`]) are children.

mod abort;
mod body;
mod exchange;

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{DockerError, Result};
use super::transport::{Connector, Stream};
use crate::http::{self, BodyDecoder, ResponseHead};

pub use abort::AbortSlot;
use body::map_io;
pub use body::{BodyReader, Response};

/// Most idle connections kept for reuse.
const MAX_IDLE: usize = 4;
/// Read size from the socket and upload chunk size.
const IO_CHUNK: usize = 64 * 1024;
/// Time limit for opening a connection (TCP connect, TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body.
pub enum Body<'a> {
    /// No body and no length header.
    None,
    /// `Content-Length: 0` (what `POST /containers/{id}/start` needs).
    Empty,
    /// A JSON document, sent with `Content-Type: application/json`.
    Json(Vec<u8>),
    /// A JSON document of this many bytes that the function writes as it
    /// goes (never held whole in memory); called again if the request is retried.
    JsonWriter(u64, &'a dyn Fn(&mut dyn Write) -> io::Result<()>),
    /// A stream of unknown length, uploaded chunked with this content type.
    Stream(&'static str, &'a mut dyn Read),
}

/// One request to the daemon.
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Path and query, already encoded (`/v1.41/containers/json?all=1`).
    pub target: String,
    /// Extra headers (never `Host`, framing or `Accept-Encoding`).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body<'a>,
    /// Limit on each read for short calls; `None` for calls that may
    /// legitimately block for long (wait, pull, export).
    pub timeout: Option<Duration>,
    /// Lets another thread abort the call (and any body read after it).
    pub abort: Option<&'a AbortSlot>,
}

impl Request<'_> {
    /// The method and path without the query, for messages.
    pub fn call(&self) -> String {
        let path = self.target.split('?').next().unwrap_or("");
        format!("{} {}", self.method, path)
    }
}

struct Conn {
    stream: Stream,
    /// Bytes read past what has been parsed.
    buf: Vec<u8>,
}

struct Pool {
    connector: Connector,
    idle: Mutex<Vec<Conn>>,
    /// When the daemon last answered any call (a response head arrived).
    last_answer: Mutex<Option<Instant>>,
}

impl Pool {
    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// HTTP client for one daemon endpoint with a pool of idle connections.
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
}

/// A failed attempt, and whether it failed before the daemon sent any byte
/// on a reused connection (so an idempotent request may be retried).
struct Failed {
    error: DockerError,
    stale: bool,
    /// Writing the request failed because the peer had already closed: the
    /// daemon never read it, so any request may be retried.
    unsent: bool,
}

impl Client {
    /// A client for the daemon `connector` reaches.
    pub fn new(connector: Connector) -> Client {
        Client {
            pool: Arc::new(Pool {
                connector,
                idle: Mutex::new(Vec::new()),
                last_answer: Mutex::new(None),
            }),
        }
    }

    /// Whether the daemon answered some call within the last `window`.
    pub fn answered_within(&self, window: Duration) -> bool {
        self.pool
            .last_answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    /// The connector (endpoint) of this client.
    pub fn connector(&self) -> &Connector {
        &self.pool.connector
    }

    /// Sends `req` and reads the response head; the body is left to the caller.
    pub fn send(&self, mut req: Request<'_>) -> Result<Response> {
        let call = req.call();
        if req.abort.is_some_and(AbortSlot::is_aborted) {
            return Err(DockerError::Aborted { call });
        }
        let streaming = matches!(req.body, Body::Stream(..));
        let idempotent = matches!(req.method, "GET" | "HEAD" | "DELETE" | "PUT") && !streaming;
        // A streamed upload cannot be replayed, so it never risks a stale pooled connection.
        let mut pooled = if streaming {
            None
        } else {
            self.pool.take_idle()
        };
        loop {
            let reused = pooled.is_some();
            let conn = match pooled.take() {
                Some(c) => c,
                None => Conn {
                    stream: self.pool.connector.connect(CONNECT_TIMEOUT)?,
                    buf: Vec::new(),
                },
            };
            match self.attempt(conn, &mut req, &call) {
                Ok(resp) => {
                    *self
                        .pool
                        .last_answer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    return Ok(resp);
                }
                // A daemon restart leaves every pooled connection dead; a POST
                // that could not even be written never reached the daemon.
                Err(f) if f.stale && reused && (idempotent || f.unsent) => {
                    log::debug!("Docker {call}: idle connection was closed; retrying once");
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    fn attempt(
        &self,
        mut conn: Conn,
        req: &mut Request<'_>,
        call: &str,
    ) -> std::result::Result<Response, Failed> {
        let abort = req.abort;
        let fail = |e: io::Error, stale: bool| Failed {
            stale,
            unsent: false,
            error: map_io(call, abort, e),
        };
        if let Some(slot) = req.abort
            && !slot.arm(&conn.stream)
        {
            return Err(Failed {
                stale: false,
                unsent: false,
                error: DockerError::Aborted { call: call.into() },
            });
        }
        conn.stream
            .set_read_timeout(req.timeout)
            .map_err(|e| fail(e, false))?;
        if let Err(e) = exchange::write_request(&mut conn.stream, req) {
            if exchange::source_failed(&e) {
                return Err(fail(e, false));
            }
            // The daemon may have answered (e.g. 404) and closed before taking
            // the whole upload: its answer says more than the broken pipe.
            let stale = exchange::is_stale(&e);
            // EPIPE: the peer had closed before the write, so it read nothing.
            let unsent = e.kind() == io::ErrorKind::BrokenPipe;
            return match exchange::read_head(&mut conn) {
                Ok(Some(head)) => self
                    .response(conn, head, req, call)
                    .map_err(|e| fail(e, false)),
                _ => Err(Failed {
                    unsent: stale && unsent,
                    ..fail(e, stale)
                }),
            };
        }
        match exchange::read_head(&mut conn) {
            Ok(Some(head)) => self
                .response(conn, head, req, call)
                .map_err(|e| fail(e, false)),
            Ok(None) => Err(fail(io::Error::from(io::ErrorKind::UnexpectedEof), true)),
            Err(e) => {
                let stale = conn.buf.is_empty() && exchange::is_stale(&e);
                Err(fail(e, stale))
            }
        }
    }

    fn response(
        &self,
        conn: Conn,
        head: ResponseHead,
        req: &Request<'_>,
        call: &str,
    ) -> io::Result<Response> {
        let framing = http::response_framing(req.method, &head)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let decoder = BodyDecoder::new(framing);
        let keep_alive = !head.closes() && !decoder.until_eof();
        let mut body = BodyReader {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool: Arc::clone(&self.pool),
            abort: req.abort.cloned(),
            call: call.to_string(),
        };
        if body.decoder.is_done() {
            body.release();
        }
        Ok(Response { head, body })
    }
}

#[cfg(test)]
mod tests;
