//! One HTTP/1.1 request and its response over a daemon connection, plus the
//! keep-alive pool and the [`AbortSlot`] that lets another thread cut a long
//! call short.
//!
//! Framing comes from the crate's codec (`src/http.rs`), sockets from
//! `transport.rs`; this layer only moves bytes between them. It knows
//! nothing of Engine API paths or JSON shapes (see `api.rs`).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::{DockerError, Result};
use super::transport::{Connector, ShutdownHandle, Stream};
use crate::http::{self, BodyDecoder, BodyFraming, HeadStatus, ParseError, ResponseHead};

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

#[derive(Default)]
struct SlotState {
    aborted: bool,
    handle: Option<ShutdownHandle>,
}

/// A cancel hook for long calls: [`AbortSlot::abort`] from any thread shuts
/// down the socket of the call currently using the slot, and makes every
/// later call with it fail with [`DockerError::Aborted`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct AbortSlot {
    state: Arc<Mutex<SlotState>>,
}

impl AbortSlot {
    /// A slot not yet aborted.
    pub fn new() -> AbortSlot {
        AbortSlot::default()
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Aborts the call in progress (if any) and all later ones.
    pub fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        if let Some(handle) = state.handle.take() {
            handle.shutdown();
        }
    }

    /// Whether [`AbortSlot::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Registers `stream` as the one to shut down; false if already aborted.
    fn arm(&self, stream: &Stream) -> bool {
        let mut state = self.lock();
        if state.aborted {
            return false;
        }
        // Without a handle the call cannot be cut short, but it still works.
        state.handle = stream.shutdown_handle().ok();
        true
    }

    fn disarm(&self) {
        self.lock().handle = None;
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

/// A response whose body has not been read yet.
pub struct Response {
    /// Status line and headers.
    pub head: ResponseHead,
    /// The decoded body.
    pub body: BodyReader,
}

impl Response {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Reads the body into memory, failing with `Io` past `limit` bytes.
    pub fn read_limited(mut self, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut capped = (&mut self.body).take(limit + 1);
        capped
            .read_to_end(&mut out)
            .map_err(|e| self.body.error(e))?;
        if out.len() as u64 > limit {
            return Err(self
                .body
                .error(io::Error::other(format!("reply larger than {limit} bytes"))));
        }
        Ok(out)
    }
}

/// The body of a response as a [`Read`]; the connection goes back to the
/// pool once the body has been read to its end.
pub struct BodyReader {
    conn: Option<Conn>,
    decoder: BodyDecoder,
    keep_alive: bool,
    pool: Arc<Pool>,
    abort: Option<AbortSlot>,
    call: String,
}

impl BodyReader {
    /// The call this body answers, e.g. `GET /containers/x/logs`.
    pub fn call(&self) -> &str {
        &self.call
    }

    /// Maps an error from [`Read::read`] on this body to a [`DockerError`].
    pub fn error(&self, e: io::Error) -> DockerError {
        map_io(&self.call, self.abort.as_ref(), e)
    }

    fn release(&mut self) {
        if let Some(slot) = &self.abort {
            slot.disarm();
        }
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.pool.put_idle(conn);
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.decoder.is_done() {
                self.release();
                return Ok(0);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Ok(0);
            };
            if !conn.buf.is_empty() {
                let (used, made) = self
                    .decoder
                    .decode(&conn.buf, out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                conn.buf.drain(..used);
                if self.decoder.is_done() {
                    self.release();
                    return Ok(made);
                }
                if made > 0 {
                    return Ok(made);
                }
                if used > 0 {
                    continue;
                }
            }
            let mut chunk = vec![0u8; IO_CHUNK.min(out.len().max(8192))];
            let n = conn.stream.read(&mut chunk)?;
            if n == 0 {
                self.conn = None;
                self.decoder
                    .finish_at_eof()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return Ok(0);
            }
            conn.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        // A caller that skips a small body (a 404 it expected) should not cost
        // the connection: finish it from what is already buffered, never
        // waiting on the socket.
        if let Some(conn) = self.conn.as_mut()
            && !self.decoder.is_done()
        {
            let mut scratch = [0u8; 4096];
            while let Ok((used, made)) = self.decoder.decode(&conn.buf, &mut scratch) {
                conn.buf.drain(..used);
                if used == 0 && made == 0 {
                    break;
                }
            }
        }
        if self.decoder.is_done() {
            self.release();
        }
        if let Some(slot) = &self.abort {
            slot.disarm();
        }
    }
}

/// Maps an I/O error of `call` to the error a caller can act on.
fn map_io(call: &str, abort: Option<&AbortSlot>, e: io::Error) -> DockerError {
    let call = call.to_string();
    if abort.is_some_and(AbortSlot::is_aborted) {
        return DockerError::Aborted { call };
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => DockerError::Timeout { call },
        io::ErrorKind::InvalidData => {
            match e.into_inner().map(|inner| inner.downcast::<ParseError>()) {
                Some(Ok(source)) => DockerError::Http {
                    call,
                    source: *source,
                },
                Some(Err(other)) => DockerError::Io {
                    call,
                    source: io::Error::new(io::ErrorKind::InvalidData, other),
                },
                None => DockerError::Io {
                    call,
                    source: io::Error::from(io::ErrorKind::InvalidData),
                },
            }
        }
        _ => DockerError::Io { call, source: e },
    }
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
        let fail = |e: io::Error, stale: bool| Failed {
            stale,
            unsent: false,
            error: map_io(call, req.abort, e),
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
        let mut headers: Vec<(&str, &str)> =
            req.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let framing = match &req.body {
            Body::None => BodyFraming::None,
            Body::Empty => BodyFraming::Length(0),
            Body::Json(bytes) => {
                headers.push(("Content-Type", "application/json"));
                BodyFraming::Length(bytes.len() as u64)
            }
            Body::JsonWriter(len, _) => {
                headers.push(("Content-Type", "application/json"));
                BodyFraming::Length(*len)
            }
            Body::Stream(content_type, _) => {
                headers.push(("Content-Type", content_type));
                BodyFraming::Chunked
            }
        };
        let head = http::request_head(req.method, &req.target, "docker", &headers, framing);
        let sent = conn
            .stream
            .write_all(&head)
            .and_then(|()| match &mut req.body {
                Body::None | Body::Empty => Ok(()),
                Body::Json(bytes) => conn.stream.write_all(bytes),
                Body::JsonWriter(_, write) => {
                    let mut out = io::BufWriter::with_capacity(64 * 1024, &mut conn.stream);
                    write(&mut out).and_then(|()| out.flush())
                }
                Body::Stream(_, reader) => match upload_chunked(&mut conn.stream, &mut **reader) {
                    Ok(()) => Ok(()),
                    Err(Upload::Sink(e)) => Err(e),
                    // The daemon still waits for the rest: drop the connection, report the source.
                    Err(Upload::Source(e)) => Err(io::Error::new(e.kind(), SourceFailed(e))),
                },
            });
        let sent = sent.and_then(|()| conn.stream.flush());
        if let Err(e) = sent {
            if e.get_ref().is_some_and(|inner| inner.is::<SourceFailed>()) {
                return Err(fail(e, false));
            }
            // The daemon may have answered (e.g. 404) and closed before taking
            // the whole upload: its answer says more than the broken pipe.
            let stale = is_stale(&e);
            // EPIPE: the peer had closed before the write, so it read nothing.
            let unsent = e.kind() == io::ErrorKind::BrokenPipe;
            return match read_head(&mut conn) {
                Ok(Some(head)) => self
                    .response(conn, head, req, call)
                    .map_err(|e| fail(e, false)),
                _ => Err(Failed {
                    unsent: stale && unsent,
                    ..fail(e, stale)
                }),
            };
        }
        match read_head(&mut conn) {
            Ok(Some(head)) => self
                .response(conn, head, req, call)
                .map_err(|e| fail(e, false)),
            Ok(None) => Err(fail(io::Error::from(io::ErrorKind::UnexpectedEof), true)),
            Err(e) => {
                let stale = conn.buf.is_empty() && is_stale(&e);
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

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Reads until a full response head is in `conn.buf`; `None` when the peer
/// closed before sending any byte.
fn read_head(conn: &mut Conn) -> io::Result<Option<ResponseHead>> {
    let mut chunk = vec![0u8; IO_CHUNK];
    loop {
        match http::parse_head(&conn.buf) {
            Ok(HeadStatus::Complete(head, used)) => {
                conn.buf.drain(..used);
                return Ok(Some(head));
            }
            Ok(HeadStatus::Partial) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let n = conn.stream.read(&mut chunk)?;
        if n == 0 {
            return if conn.buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    ParseError::Truncated,
                ))
            };
        }
        conn.buf.extend_from_slice(&chunk[..n]);
    }
}

/// Which side of an upload failed.
enum Upload {
    /// Reading the caller's body.
    Source(io::Error),
    /// Writing to the daemon.
    Sink(io::Error),
}

/// Marks an I/O error that came from the upload's source, not the socket.
#[derive(Debug)]
struct SourceFailed(io::Error);

impl std::fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the upload: {}", self.0)
    }
}

impl std::error::Error for SourceFailed {}

/// Streams `body` as chunks of at most [`IO_CHUNK`] bytes, then the last chunk.
fn upload_chunked(stream: &mut Stream, body: &mut dyn Read) -> std::result::Result<(), Upload> {
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Upload::Source(e)),
        };
        let mut frame = http::chunk_header(n);
        frame.extend_from_slice(&buf[..n]);
        frame.extend_from_slice(http::CHUNK_END);
        stream.write_all(&frame).map_err(Upload::Sink)?;
    }
    stream.write_all(http::LAST_CHUNK).map_err(Upload::Sink)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
