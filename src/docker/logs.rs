//! The Engine's multiplexed log stream (containers without a TTY): frames of
//! `[stream u8, 0, 0, 0, size u32 BE]` followed by `size` bytes of payload.
//!
//! Pure and incremental: bytes go in as they arrive, split anywhere. The HTTP
//! call that produces them lives in `api.rs`.

/// Which stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// stdin (only for attached streams).
    Stdin,
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
    /// An error the daemon raised while streaming.
    System,
}

/// A frame header that is not a log frame header (a TTY stream, or garbage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame(pub [u8; 8]);

/// Splits a multiplexed stream into payload pieces per stream.
#[derive(Debug, Default)]
pub struct Demuxer {
    header: [u8; 8],
    have: usize,
    stream: Option<LogStream>,
    remaining: u32,
}

impl Demuxer {
    /// A demuxer at the start of a stream.
    pub fn new() -> Demuxer {
        Demuxer::default()
    }

    /// Feeds `input`; `sink` gets each payload piece with its stream (a frame
    /// may arrive in several pieces).
    pub fn feed(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(LogStream, &[u8]),
    ) -> Result<(), BadFrame> {
        while !input.is_empty() {
            match self.stream {
                Some(stream) if self.remaining > 0 => {
                    let n = input.len().min(self.remaining as usize);
                    sink(stream, &input[..n]);
                    self.remaining -= n as u32;
                    input = &input[n..];
                }
                _ => {
                    let n = input.len().min(8 - self.have);
                    self.header[self.have..self.have + n].copy_from_slice(&input[..n]);
                    self.have += n;
                    input = &input[n..];
                    if self.have == 8 {
                        self.have = 0;
                        let h = self.header;
                        if h[1..4] != [0, 0, 0] {
                            return Err(BadFrame(h));
                        }
                        self.stream = Some(match h[0] {
                            0 => LogStream::Stdin,
                            1 => LogStream::Stdout,
                            2 => LogStream::Stderr,
                            3 => LogStream::System,
                            _ => return Err(BadFrame(h)),
                        });
                        self.remaining = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the stream stopped between frames (not mid-header or mid-payload).
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }
}

/// Collects stdout, stderr and daemon errors interleaved, up to a byte budget.
#[derive(Debug)]
pub struct TailCollector {
    demuxer: Demuxer,
    out: Vec<u8>,
    budget: usize,
}

impl TailCollector {
    /// A collector that keeps at most `budget` bytes.
    pub fn new(budget: usize) -> TailCollector {
        TailCollector {
            demuxer: Demuxer::new(),
            out: Vec::new(),
            budget,
        }
    }

    /// Feeds bytes; returns true once the budget is used up (stop reading).
    pub fn feed(&mut self, input: &[u8]) -> Result<bool, BadFrame> {
        let (out, budget) = (&mut self.out, self.budget);
        self.demuxer.feed(input, &mut |_, payload| {
            let room = budget.saturating_sub(out.len());
            out.extend_from_slice(&payload[..payload.len().min(room)]);
        })?;
        Ok(self.is_full())
    }

    /// Whether the budget is used up.
    pub fn is_full(&self) -> bool {
        self.out.len() >= self.budget
    }

    /// The text collected (invalid UTF-8, e.g. a character cut by the
    /// budget, is replaced).
    pub fn into_string(self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn stream() -> Vec<u8> {
        [
            frame(1, b"out one\n"),
            frame(2, b"err\n"),
            frame(1, b""),
            frame(3, b"daemon: log error\n"),
            frame(1, b"out two\n"),
        ]
        .concat()
    }

    #[test]
    fn demux_at_every_split() {
        let bytes = stream();
        for split in 0..=bytes.len() {
            let mut d = Demuxer::new();
            let mut got: Vec<(LogStream, Vec<u8>)> = Vec::new();
            for piece in [&bytes[..split], &bytes[split..]] {
                d.feed(piece, &mut |s, p| match got.last_mut() {
                    Some((last, buf)) if *last == s => buf.extend_from_slice(p),
                    _ => got.push((s, p.to_vec())),
                })
                .unwrap();
            }
            assert!(d.at_boundary());
            assert_eq!(
                got,
                vec![
                    (LogStream::Stdout, b"out one\n".to_vec()),
                    (LogStream::Stderr, b"err\n".to_vec()),
                    (LogStream::System, b"daemon: log error\n".to_vec()),
                    (LogStream::Stdout, b"out two\n".to_vec()),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_at_a_time_and_mid_frame() {
        let bytes = stream();
        let mut d = Demuxer::new();
        let mut text = Vec::new();
        for b in &bytes[..bytes.len() - 3] {
            d.feed(std::slice::from_ref(b), &mut |_, p| {
                text.extend_from_slice(p)
            })
            .unwrap();
        }
        assert!(!d.at_boundary());
        assert_eq!(text, b"out one\nerr\ndaemon: log error\nout t");
    }

    #[test]
    fn bad_headers() {
        let mut d = Demuxer::new();
        assert_eq!(
            d.feed(b"hello world\n", &mut |_, _| {}),
            Err(BadFrame(*b"hello wo"))
        );
        let mut d = Demuxer::new();
        assert_eq!(
            d.feed(&[4, 0, 0, 0, 0, 0, 0, 1], &mut |_, _| {}),
            Err(BadFrame([4, 0, 0, 0, 0, 0, 0, 1]))
        );
    }

    #[test]
    fn budget_stops_collection() {
        let mut c = TailCollector::new(10);
        assert!(!c.feed(&frame(1, b"12345")).unwrap());
        assert!(c.feed(&frame(2, b"6789abcdef")).unwrap());
        assert_eq!(c.into_string(), "123456789a");
    }

    #[test]
    fn budget_cut_inside_a_character() {
        let mut c = TailCollector::new(4);
        assert!(c.feed(&frame(1, "abcé".as_bytes())).unwrap());
        assert_eq!(c.into_string(), "abc\u{fffd}");
    }
}
