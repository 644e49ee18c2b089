//! The multiplexed log stream (`docker::logs`): the incremental demuxer fed
//! in arbitrary pieces (cut points taken from the input) must agree with a
//! whole-buffer reference parse, and the tail collector must keep exactly the
//! first `budget` payload bytes.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::docker::logs::{BadFrame, Demuxer, LogStream, TailCollector};

type Runs = Vec<(LogStream, Vec<u8>)>;

/// Appends a payload piece, merging it into the previous run of its stream.
fn push(runs: &mut Runs, stream: LogStream, piece: &[u8]) {
    match runs.last_mut() {
        Some((last, buf)) if *last == stream => buf.extend_from_slice(piece),
        _ => runs.push((stream, piece.to_vec())),
    }
}

/// The whole stream parsed at once: runs, the error, and whether it stopped
/// between frames.
fn reference(bytes: &[u8]) -> (Runs, Result<(), BadFrame>, bool) {
    let mut runs = Runs::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(h) = bytes.get(i..i + 8) else {
            return (runs, Ok(()), false);
        };
        let h: [u8; 8] = h.try_into().expect("eight bytes");
        let stream = match (h[0], &h[1..4]) {
            (0, [0, 0, 0]) => LogStream::Stdin,
            (1, [0, 0, 0]) => LogStream::Stdout,
            (2, [0, 0, 0]) => LogStream::Stderr,
            (3, [0, 0, 0]) => LogStream::System,
            _ => return (runs, Err(BadFrame(h)), false),
        };
        let size = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let start = i + 8;
        let end = start.saturating_add(size).min(bytes.len());
        if end > start {
            push(&mut runs, stream, &bytes[start..end]);
        }
        if end - start < size {
            return (runs, Ok(()), false);
        }
        i = end;
    }
    (runs, Ok(()), true)
}

fuzz_target!(|data: &[u8]| {
    // Bytes 0-1: the collector's budget (0..=4095); the rest is split as
    // `common::pieces` describes.
    let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else {
        return;
    };
    let budget = usize::from(u16::from_le_bytes([b0, b1]) & 0x0fff);
    let (pieces, whole) = common::pieces(&data[2..]);
    let (want_runs, want_result, want_boundary) = reference(whole);

    let mut d = Demuxer::new();
    let mut runs = Runs::new();
    let mut result = Ok(());
    for piece in &pieces {
        result = d.feed(piece, &mut |s, p| {
            assert!(!p.is_empty(), "empty payload piece");
            push(&mut runs, s, p);
        });
        if result.is_err() {
            break;
        }
    }
    assert_eq!(runs, want_runs);
    assert_eq!(result, want_result);
    if result.is_ok() {
        assert_eq!(d.at_boundary(), want_boundary);
    }

    let mut c = TailCollector::new(budget);
    let mut full = false;
    for piece in &pieces {
        match c.feed(piece) {
            Ok(f) => full = f,
            Err(_) => break,
        }
    }
    let all: Vec<u8> = want_runs
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let kept = &all[..all.len().min(budget)];
    assert_eq!(c.is_full(), all.len() >= budget);
    if full {
        assert!(c.is_full());
    }
    assert_eq!(c.into_string(), String::from_utf8_lossy(kept));
});
