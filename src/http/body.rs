//! Response bodies: how one is delimited (RFC 9112 §6.3) and the
//! incremental decoder that takes bytes as they arrive (length, chunked
//! with trailers, or until EOF) and gives the payload out. No I/O.

use super::{MAX_LINE, ParseError, ResponseHead};

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

/// Where a decoder is in the body.
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
