//! The Docker client's HTTP/1.1 response parsing (the crate's codec, `http`): status
//! line, headers, framing choice and body decoding, driven the way
//! `client.rs` drives them. The same bytes fed in arbitrary pieces (cut
//! points taken from the input) must give exactly what feeding them whole
//! gives; a decoded fixed-length body has its length.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::http::{
    BodyDecoder, Framing, HeadStatus, ParseError, ResponseHead, parse_head, response_framing,
};

/// Everything observable about one response read off a connection.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    head: Option<ResponseHead>,
    framing: Option<Framing>,
    body: Vec<u8>,
    /// The first error, or `Truncated` from the final EOF.
    error: Option<ParseError>,
    /// Bytes after the body (the next response on a kept-alive connection).
    leftover: Vec<u8>,
}

fn read(pieces: &[&[u8]], method: &str, out_cap: usize) -> Outcome {
    let mut o = Outcome {
        head: None,
        framing: None,
        body: Vec::new(),
        error: None,
        leftover: Vec::new(),
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut decoder: Option<BodyDecoder> = None;
    let mut out = vec![0u8; out_cap];
    for piece in pieces {
        buf.extend_from_slice(piece);
        if decoder.is_none() {
            match parse_head(&buf) {
                Ok(HeadStatus::Partial) => continue,
                Ok(HeadStatus::Complete(head, used)) => {
                    assert!(used <= buf.len());
                    buf.drain(..used);
                    let _ = head.closes();
                    match response_framing(method, &head) {
                        Ok(f) => {
                            o.framing = Some(f);
                            decoder = Some(BodyDecoder::new(f));
                        }
                        Err(e) => o.error = Some(e),
                    }
                    o.head = Some(head);
                    if o.error.is_some() {
                        return o;
                    }
                }
                Err(e) => {
                    o.error = Some(e);
                    return o;
                }
            }
        }
        let Some(d) = decoder.as_mut() else { continue };
        while !d.is_done() {
            match d.decode(&buf, &mut out) {
                Ok((used, made)) => {
                    assert!(used <= buf.len() && made <= out.len());
                    buf.drain(..used);
                    o.body.extend_from_slice(&out[..made]);
                    if used == 0 && made == 0 {
                        break;
                    }
                }
                Err(e) => {
                    o.error = Some(e);
                    return o;
                }
            }
        }
    }
    // The peer closes the connection.
    match decoder.as_mut() {
        None if buf.is_empty() => {}
        None => o.error = Some(ParseError::Truncated),
        Some(d) => {
            let was_done = d.is_done();
            if let Err(e) = d.finish_at_eof() {
                o.error = Some(e);
            } else if was_done {
                o.leftover = buf;
            }
        }
    }
    o
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: method and output-buffer size (1..=64, as a slow reader would
    // ask for); the rest is split as `common::pieces` describes.
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let method = if knobs & 0x80 != 0 { "HEAD" } else { "GET" };
    let out_cap = usize::from(knobs & 0x3f) + 1;
    let (pieces, whole) = common::pieces(rest);
    let split = read(&pieces, method, out_cap);
    let one = read(&[whole], method, 4096);
    assert_eq!(split, one, "pieces {pieces:?}");
    if let (Some(Framing::Length(n)), None) = (one.framing, &one.error) {
        assert_eq!(one.body.len() as u64, n);
    }
    if let Some(e) = &one.error {
        let _ = e.to_string();
    }
});
