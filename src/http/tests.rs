//! Byte-fixture tests for the HTTP/1.1 codec in `http.rs`.

use super::*;

/// Parses a full response fed in two pieces split at `split`, the way the
/// client does: accumulate until the head parses, then decode the rest in
/// pieces. Returns (head, body, trailing bytes).
fn parse_split(
    method: &str,
    bytes: &[u8],
    split: usize,
) -> Result<(ResponseHead, Vec<u8>, Vec<u8>), ParseError> {
    let pieces = [&bytes[..split], &bytes[split..]];
    let mut buf = Vec::new();
    let mut head = None;
    let mut decoder = None;
    let mut body = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if head.is_none() {
            match parse_head(&buf)? {
                HeadStatus::Partial => continue,
                HeadStatus::Complete(h, used) => {
                    buf.drain(..used);
                    decoder = Some(BodyDecoder::new(response_framing(method, &h)?));
                    head = Some(h);
                }
            }
        }
        let dec = decoder.as_mut().unwrap();
        // Decode through a tiny output buffer to exercise partial progress too.
        let mut out = [0u8; 3];
        loop {
            let (used, made) = dec.decode(&buf, &mut out)?;
            buf.drain(..used);
            body.extend_from_slice(&out[..made]);
            if used == 0 && made == 0 {
                break;
            }
        }
    }
    let mut dec = decoder.ok_or(ParseError::Truncated)?;
    if !dec.is_done() {
        dec.finish_at_eof()?;
    }
    Ok((head.unwrap(), body, buf))
}

fn parse_all_splits(method: &str, bytes: &[u8]) -> (ResponseHead, Vec<u8>, Vec<u8>) {
    let first = parse_split(method, bytes, 0).unwrap();
    for split in 1..=bytes.len() {
        assert_eq!(
            parse_split(method, bytes, split).unwrap(),
            first,
            "split at {split}"
        );
    }
    first
}

#[test]
fn content_length_body_at_every_split() {
    let raw = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\ncontent-length: 5\r\n\r\nhelloNEXT";
    let (head, body, rest) = parse_all_splits("GET", raw);
    assert_eq!(head.status, 200);
    assert_eq!(head.reason, "OK");
    assert_eq!(head.header("API-VERSION"), Some("1.41"));
    assert_eq!(body, b"hello");
    assert_eq!(rest, b"NEXT");
    assert!(!head.closes());
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
4;name=value\r\nWiki\r\n5 ; ext\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
0;last\r\nX-Trailer: yes\r\nAnother: one\r\n\r\nNEXT";
    let (_, body, rest) = parse_all_splits("GET", raw);
    assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(rest, b"NEXT");
}

#[test]
fn eof_delimited_body() {
    let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
    let (head, body, rest) = parse_all_splits("GET", raw);
    assert_eq!(body, b"all of it");
    assert_eq!(rest, b"");
    assert!(head.closes());
}

#[test]
fn no_body_for_head_204_304() {
    let head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nNEXT";
    let (_, body, rest) = parse_all_splits("HEAD", head_resp);
    assert_eq!((body, rest), (vec![], b"NEXT".to_vec()));
    for status in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\nNEXT");
        let (head, body, rest) = parse_all_splits("POST", raw.as_bytes());
        assert_eq!(head.status.to_string(), status[..3]);
        assert_eq!((body, rest), (vec![], b"NEXT".to_vec()));
    }
}

#[test]
fn interim_100_is_skipped() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
    let (head, body, _) = parse_all_splits("POST", raw);
    assert_eq!(head.status, 201);
    assert_eq!(body, b"{}");
}

#[test]
fn connection_close_and_keep_alive() {
    let h = |minor, v: &str| ResponseHead {
        minor,
        status: 200,
        reason: String::new(),
        headers: vec![("Connection".into(), v.into())],
    };
    assert!(h(1, "Close").closes());
    assert!(h(1, "upgrade, close").closes());
    assert!(!h(1, "keep-alive").closes());
    assert!(!h(0, "Keep-Alive").closes());
    assert!(h(0, "").closes());
}

#[test]
fn malformed_status_lines() {
    for raw in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"garbage\r\n\r\n",
    ] {
        assert!(
            matches!(parse_head(raw), Err(ParseError::StatusLine(_))),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"),
        Err(ParseError::HeaderLine("no colon here".into()))
    );
}

#[test]
fn head_too_long() {
    let mut raw = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    assert_eq!(parse_head(&raw), Err(ParseError::HeadTooLong));
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_head(&raw), Err(ParseError::HeadTooLong));
}

#[test]
fn partial_head() {
    assert_eq!(
        parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
        Ok(HeadStatus::Partial)
    );
    assert_eq!(parse_head(b""), Ok(HeadStatus::Partial));
}

#[test]
fn bad_chunk_size_and_terminator() {
    let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(
        parse_split("GET", bad_size, 10),
        Err(ParseError::ChunkSize("zz".into()))
    );
    let bad_end = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX";
    assert_eq!(
        parse_split("GET", bad_end, 10),
        Err(ParseError::ChunkTerminator)
    );
    let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
    assert!(matches!(
        parse_split("GET", huge, 5),
        Err(ParseError::ChunkSize(_))
    ));
    let mut long_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
    assert_eq!(
        parse_split("GET", &long_line, 3),
        Err(ParseError::LineTooLong)
    );
}

#[test]
fn truncated_bodies() {
    let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_eq!(parse_split("GET", short, 4), Err(ParseError::Truncated));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
    assert_eq!(parse_split("GET", chunked, 4), Err(ParseError::Truncated));
}

#[test]
fn content_length_rules() {
    let head = |v: &str| ResponseHead {
        minor: 1,
        status: 200,
        reason: String::new(),
        headers: vec![("Content-Length".into(), v.into())],
    };
    assert_eq!(
        response_framing("GET", &head("12")),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        response_framing("GET", &head("7, 7")),
        Ok(Framing::Length(7))
    );
    assert_eq!(
        response_framing("GET", &head("7, 8")),
        Err(ParseError::ContentLength("7, 8".into()))
    );
    assert_eq!(
        response_framing("GET", &head("-1")),
        Err(ParseError::ContentLength("-1".into()))
    );
    let mut both = head("5");
    both.headers
        .push(("Transfer-Encoding".into(), "chunked".into()));
    assert_eq!(response_framing("GET", &both), Ok(Framing::Chunked));
    let mut gz = head("5");
    gz.headers[0] = ("Transfer-Encoding".into(), "gzip".into());
    assert_eq!(response_framing("GET", &gz), Ok(Framing::Eof));
}

#[test]
fn request_serialisation() {
    assert_eq!(
        String::from_utf8(request_head(
            "POST",
            "/v1.41/containers/abc/start",
            "docker",
            &[],
            BodyFraming::Length(0)
        ))
        .unwrap(),
        "POST /v1.41/containers/abc/start HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        String::from_utf8(request_head(
            "PUT",
            "/x",
            "docker",
            &[("Content-Type", "application/x-tar")],
            BodyFraming::Chunked
        ))
        .unwrap(),
        "PUT /x HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        String::from_utf8(request_head(
            "GET",
            "/_ping",
            "docker",
            &[],
            BodyFraming::None
        ))
        .unwrap(),
        "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
    );
    assert_eq!(chunk_header(255), b"ff\r\n");
}

/// Found by fuzzing: one read holding good chunk data and then bad framing
/// lost the data, while the same bytes in two reads delivered it.
#[test]
fn data_before_bad_framing_comes_out_before_the_error() {
    let mut d = BodyDecoder::new(Framing::Chunked);
    let mut out = [0u8; 64];
    assert_eq!(d.decode(b"3\r\nabcX\r\n", &mut out), Ok((6, 3)));
    assert_eq!(&out[..3], b"abc");
    assert_eq!(
        d.decode(b"X\r\n", &mut out),
        Err(ParseError::ChunkTerminator)
    );
    assert_eq!(d.decode(b"", &mut out), Err(ParseError::ChunkTerminator));
    assert_eq!(d.finish_at_eof(), Err(ParseError::ChunkTerminator));
    assert!(!d.is_done());

    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(d.decode(b"2\r\nok\r\nzz\r\n", &mut out), Ok((11, 2)));
    assert_eq!(
        d.decode(b"", &mut out),
        Err(ParseError::ChunkSize("zz".into()))
    );
    // Nothing decoded before the error: it comes at once.
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert_eq!(
        d.decode(b"zz\r\n", &mut out),
        Err(ParseError::ChunkSize("zz".into()))
    );
}

#[test]
fn a_status_line_alone() {
    assert_eq!(
        parse_status_line("HTTP/1.1 407 Proxy Authentication Required"),
        Ok(StatusLine {
            minor: 1,
            status: 407,
            reason: "Proxy Authentication Required".into()
        })
    );
    assert_eq!(
        parse_status_line("HTTP/1.0 200").map(|l| (l.minor, l.status, l.reason)),
        Ok((0, 200, String::new()))
    );
    for bad in ["SSH-2.0-OpenSSH_9.2", "HTTP/2 200", "HTTP/1.1 20", ""] {
        assert!(
            matches!(parse_status_line(bad), Err(ParseError::StatusLine(_))),
            "{bad:?}"
        );
    }
}
