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

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the peer closes the connection.
    Eof,
}

/// The body framing of a response to a request with method `method`
/// (RFC 9112 §6.3).
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, ParseError> {
    if method.eq_ignore_ascii_case("HEAD") || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let codings: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        // Transfer-Encoding overrides Content-Length; without chunked last the body runs to EOF.
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Eof
        });
    }
    let mut length: Option<u64> = None;
    for (_, v) in head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',').map(str::trim) {
            let bad = || ParseError::ContentLength(v.clone());
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u64 = part.parse().map_err(|_| bad())?;
            if length.is_some_and(|l| l != n) {
                return Err(bad());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::Eof,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length(u64),
    Eof,
    SizeLine(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailer(Vec<u8>),
    Done,
    /// Malformed framing: every later call reports it again.
    Failed(ParseError),
}

/// Incremental body decoder: feed it whatever bytes arrived, get payload out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    /// A decoder for a body with this framing.
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::SizeLine(Vec::new()),
            Framing::Eof => State::Eof,
        };
        BodyDecoder { state }
    }

    /// Whether the whole body has been decoded; bytes after it belong to the
    /// next response on the connection.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends only when the peer closes the connection.
    pub fn until_eof(&self) -> bool {
        self.state == State::Eof
    }

    /// Decodes from `input` into `output`; returns (bytes consumed, bytes
    /// produced). Consumes nothing more once the body is done.
    ///
    /// Payload decoded before malformed framing is returned first and the
    /// error on the next call, so the result never depends on how the bytes
    /// were split into reads (found by fuzzing). Once failed, every call
    /// fails the same way.
    pub fn decode(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize), ParseError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let mut progress = (0, 0);
        match self.decode_into(input, output, &mut progress) {
            Ok(()) => Ok(progress),
            Err(e) => {
                self.state = State::Failed(e.clone());
                if progress.1 > 0 { Ok(progress) } else { Err(e) }
            }
        }
    }

    /// The decoding loop; `progress` (consumed, produced) stays counted when
    /// it fails.
    fn decode_into(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        progress: &mut (usize, usize),
    ) -> Result<(), ParseError> {
        let (used, made) = progress;
        while *used < input.len() && *made < output.len() {
            let inp = &input[*used..];
            let out = &mut output[*made..];
            match &mut self.state {
                State::Done | State::Failed(_) => break,
                State::Eof => {
                    let n = inp.len().min(out.len());
                    out[..n].copy_from_slice(&inp[..n]);
                    *used += n;
                    *made += n;
                }
                State::Length(rem) | State::Data(rem) => {
                    let n = (inp.len().min(out.len()) as u64).min(*rem) as usize;
                    out[..n].copy_from_slice(&inp[..n]);
                    *used += n;
                    *made += n;
                    *rem -= n as u64;
                    if *rem == 0 {
                        self.state = match self.state {
                            State::Length(_) => State::Done,
                            _ => State::DataEnd(0),
                        };
                    }
                }
                State::DataEnd(seen) => {
                    let want = if *seen == 0 { b'\r' } else { b'\n' };
                    if inp[0] != want {
                        return Err(ParseError::ChunkTerminator);
                    }
                    *used += 1;
                    if *seen == 0 {
                        *seen = 1;
                    } else {
                        self.state = State::SizeLine(Vec::new());
                    }
                }
                State::SizeLine(line) => {
                    let (n, complete) = take_line(line, inp)?;
                    *used += n;
                    if complete {
                        let size = parse_chunk_size(line)?;
                        self.state = if size == 0 {
                            State::Trailer(Vec::new())
                        } else {
                            State::Data(size)
                        };
                    }
                }
                State::Trailer(line) => {
                    let (n, complete) = take_line(line, inp)?;
                    *used += n;
                    if complete {
                        if line.is_empty() {
                            self.state = State::Done;
                        } else {
                            line.clear();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer closed the connection: fine only for an EOF-delimited or
    /// finished body.
    pub fn finish_at_eof(&mut self) -> Result<(), ParseError> {
        match &self.state {
            State::Eof | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed(e) => Err(e.clone()),
            _ => Err(ParseError::Truncated),
        }
    }
}

/// Appends bytes of `inp` to `line` up to and including a `\n`; returns
/// (bytes used, whether the line is complete). The stored line excludes CRLF.
fn take_line(line: &mut Vec<u8>, inp: &[u8]) -> Result<(usize, bool), ParseError> {
    let (n, complete) = match inp.iter().position(|&b| b == b'\n') {
        Some(p) => (p + 1, true),
        None => (inp.len(), false),
    };
    line.extend_from_slice(&inp[..n]);
    if line.len() > MAX_LINE {
        return Err(ParseError::LineTooLong);
    }
    if complete {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok((n, complete))
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let bad = || ParseError::ChunkSize(String::from_utf8_lossy(line).chars().take(80).collect());
    // Extensions (`;name=value`) carry nothing Docker uses: skip them.
    let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let size = size.trim_ascii();
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(size).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

#[cfg(test)]
mod tests;
