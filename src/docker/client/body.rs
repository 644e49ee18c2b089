//! A response: its head, and its body as a [`Read`] that hands the
//! connection back to the pool once read to its end, plus how an I/O error
//! of a call becomes the [`DockerError`] a caller can act on.

use std::io::{self, Read};
use std::sync::Arc;

use super::super::error::{DockerError, Result};
use super::abort::AbortSlot;
use super::{Conn, IO_CHUNK, Pool};
use crate::http::{BodyDecoder, ParseError, ResponseHead};

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
    pub(super) conn: Option<Conn>,
    pub(super) decoder: BodyDecoder,
    pub(super) keep_alive: bool,
    pub(super) pool: Arc<Pool>,
    pub(super) abort: Option<AbortSlot>,
    pub(super) call: String,
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

    pub(super) fn release(&mut self) {
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
pub(super) fn map_io(call: &str, abort: Option<&AbortSlot>, e: io::Error) -> DockerError {
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
