//! The bytes of one exchange on a connection: the request head and body
//! (a streamed body uploaded chunked), then the response head. Knows which
//! I/O failures mean a pooled connection had gone stale.

use std::io::{self, Read, Write};

use super::super::transport::Stream;
use super::{Body, Conn, IO_CHUNK, Request};
use crate::http::{self, BodyFraming, HeadStatus, ParseError, ResponseHead};

/// Writes the request head and body, and flushes. An error that came from
/// reading a streamed body rather than the socket is marked
/// (see [`source_failed`]): the daemon still waits for the rest, so the
/// connection is dropped and the source's error reported.
pub(super) fn write_request(stream: &mut Stream, req: &mut Request<'_>) -> io::Result<()> {
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
    stream.write_all(&head)?;
    match &mut req.body {
        Body::None | Body::Empty => {}
        Body::Json(bytes) => stream.write_all(bytes)?,
        Body::JsonWriter(_, write) => {
            let mut out = io::BufWriter::with_capacity(64 * 1024, &mut *stream);
            write(&mut out).and_then(|()| out.flush())?;
        }
        Body::Stream(_, reader) => match upload_chunked(stream, &mut **reader) {
            Ok(()) => {}
            Err(Upload::Sink(e)) => return Err(e),
            Err(Upload::Source(e)) => return Err(io::Error::new(e.kind(), SourceFailed(e))),
        },
    }
    stream.flush()
}

/// Whether a [`write_request`] error came from the upload's source.
pub(super) fn source_failed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SourceFailed>())
}

pub(super) fn is_stale(e: &io::Error) -> bool {
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
pub(super) fn read_head(conn: &mut Conn) -> io::Result<Option<ResponseHead>> {
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
