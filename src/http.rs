//! The crate's HTTP/1.1 codec, with no I/O: request heads and chunk framing
//! out, status lines, response heads and body decoding in.
//!
//! Every HTTP exchange the worker makes reads its answer through here: the
//! Docker client (`docker/client.rs`), the OTLP exporter
//! (`telemetry/http.rs`), the proxy's reply to `CONNECT` (`net/proxy.rs`)
//! and the registry probe (`preflight/registry.rs`); [`parse_status_line`]
//! is the one status-line parser and [`parse_head`] the one head parser.
//! Everything works on byte slices so it can be tested (and fuzzed) on
//! fixtures split at any boundary. Sockets, pooling and timeouts live with
//! the callers and in [`crate::net`]; this module must not touch them.

use std::fmt;

/// Longest response head (status line plus headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) or trailer line accepted.
pub const MAX_LINE: usize = 4096;
/// Most headers accepted in a response head.
const MAX_HEADERS: usize = 128;

/// Malformed HTTP framing from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The status line is not `HTTP/1.x NNN reason`.
    StatusLine(String),
    /// A header line has no `:` or an invalid name.
    HeaderLine(String),
    /// The head is longer than [`MAX_HEAD`] or has too many headers.
    HeadTooLong,
    /// `Content-Length` is not a single decimal number.
    ContentLength(String),
    /// A chunk-size line is not hex digits (plus optional extensions).
    ChunkSize(String),
    /// A chunk's data is not followed by CRLF.
    ChunkTerminator,
    /// A chunk-size or trailer line is longer than [`MAX_LINE`].
    LineTooLong,
    /// The connection closed before the body was complete.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::StatusLine(l) => write!(f, "malformed HTTP status line {l:?}"),
            ParseError::HeaderLine(l) => write!(f, "malformed HTTP header line {l:?}"),
            ParseError::HeadTooLong => write!(f, "HTTP response head too long"),
            ParseError::ContentLength(v) => write!(f, "invalid Content-Length {v:?}"),
            ParseError::ChunkSize(l) => write!(f, "invalid chunk size line {l:?}"),
            ParseError::ChunkTerminator => write!(f, "chunk data not followed by CRLF"),
            ParseError::LineTooLong => write!(f, "chunk size or trailer line too long"),
            ParseError::Truncated => write!(f, "connection closed before the response body ended"),
        }
    }
}

impl std::error::Error for ParseError {}

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body and no length header (GET, HEAD, DELETE).
    None,
    /// `Content-Length: n` (n may be 0: Docker wants that on `start`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, for uploads of unknown length.
    Chunked,
}

/// Serialises a request head for `host` (the `Host` value: `docker` for the
/// Engine API, as the CLI sends; `host:port` elsewhere). `headers` are
/// written as given, after `Host` and before the framing header; no caller
/// sends `Accept-Encoding`.
pub fn request_head(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: BodyFraming,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    match body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => out.push_str(&format!("Content-Length: {n}\r\n")),
        BodyFraming::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The size line that precedes `len` bytes of chunk data.
pub fn chunk_header(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// Ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The zero-length chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A parsed response status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// `HTTP/1.0` or `HTTP/1.1` minor version.
    pub minor: u8,
    /// Status code.
    pub status: u16,
    /// Reason phrase, possibly empty.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header called `name` (matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the peer will close the connection after this response.
    pub fn closes(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.minor == 0 {
            !has("keep-alive")
        } else {
            has("close")
        }
    }
}

/// Result of trying to parse a head from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadStatus {
    /// More bytes are needed.
    Partial,
    /// A final (non-1xx) head, and how many bytes of the input it used
    /// (including any interim 1xx heads skipped before it).
    Complete(ResponseHead, usize),
}

/// Parses a response head from the start of `buf`. Call again with more
/// bytes after [`HeadStatus::Partial`]; interim `1xx` responses are skipped.
pub fn parse_head(buf: &[u8]) -> Result<HeadStatus, ParseError> {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let Some(end) = find_head_end(rest) else {
            if rest.len() > MAX_HEAD {
                return Err(ParseError::HeadTooLong);
            }
            return Ok(HeadStatus::Partial);
        };
        if end > MAX_HEAD {
            return Err(ParseError::HeadTooLong);
        }
        let head = parse_head_block(&rest[..end])?;
        start += end;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        return Ok(HeadStatus::Complete(head, start));
    }
}

/// Length of the head including its blank line, accepting bare LF endings.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

fn parse_head_block(block: &[u8]) -> Result<ResponseHead, ParseError> {
    let text = String::from_utf8_lossy(block);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let StatusLine {
        minor,
        status,
        reason,
    } = parse_status_line(lines.next().unwrap_or(""))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let bad = || ParseError::HeaderLine(line.chars().take(80).collect());
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(bad());
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::HeadTooLong);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        minor,
        status,
        reason,
        headers,
    })
}

/// A response's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// `HTTP/1.0` or `HTTP/1.1` minor version.
    pub minor: u8,
    /// Status code (three digits).
    pub status: u16,
    /// Reason phrase, possibly empty.
    pub reason: String,
}

/// Parses `HTTP/1.x NNN reason` (the line without its line ending).
/// [`parse_head`] uses it; so do callers that read no more than the first
/// line (the registry probe) or judge a head only by it (`CONNECT`).
pub fn parse_status_line(line: &str) -> Result<StatusLine, ParseError> {
    let bad_status = || ParseError::StatusLine(line.chars().take(80).collect());
    let (version, rest) = line.split_once(' ').ok_or_else(bad_status)?;
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(bad_status()),
    };
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_status());
    }
    let status: u16 = code.parse().map_err(|_| bad_status())?;
    Ok(StatusLine {
        minor,
        status,
        reason: reason.to_string(),
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

mod body;

pub use body::{BodyDecoder, Framing, response_framing};

#[cfg(test)]
mod tests;
