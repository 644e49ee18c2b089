//! Streaming gunzip: a `.tar.gz` archive inflated as it is read, in
//! bounded memory, so its tar headers can be walked without unpacking it.

use std::io::{self, BufRead, Read};

use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// A gzip stream (RFC 1952, one member or several) inflated as it is read,
/// in bounded memory (the 32 KiB window lives in the inflater). The CRC is
/// not checked: this reads only a manifest, and the daemon checks what it loads.
pub struct Gunzip<R> {
    inner: R,
    state: Box<InflateState>,
    in_member: bool,
    members: u32,
}

impl<R: BufRead> Gunzip<R> {
    /// Inflates the gzip data `inner` gives.
    pub fn new(inner: R) -> Self {
        Gunzip {
            inner,
            state: InflateState::new_boxed(DataFormat::Raw),
            in_member: false,
            members: 0,
        }
    }

    /// Reads the next member's header; `false` at the end of the data (or
    /// at bytes after a member that start no other, such as zero padding).
    fn start_member(&mut self) -> io::Result<bool> {
        let next = self.inner.fill_buf()?.first().copied();
        if self.members > 0 && next != Some(0x1f) {
            return Ok(false);
        }
        let mut fixed = [0u8; 10];
        self.inner.read_exact(&mut fixed)?;
        if fixed[..3] != [0x1f, 0x8b, 8] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not gzip data"));
        }
        let flags = fixed[3];
        if flags & 0x04 != 0 {
            let mut len = [0u8; 2];
            self.inner.read_exact(&mut len)?;
            discard(&mut self.inner, u64::from(u16::from_le_bytes(len)))?;
        }
        for flag in [0x08, 0x10] {
            // File name, comment: NUL-terminated.
            if flags & flag != 0 {
                let mut text = Vec::new();
                (&mut self.inner).take(64 * 1024).read_until(0, &mut text)?;
                if text.last() != Some(&0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad gzip header",
                    ));
                }
            }
        }
        if flags & 0x02 != 0 {
            discard(&mut self.inner, 2)?;
        }
        self.state.reset(DataFormat::Raw);
        self.in_member = true;
        self.members += 1;
        Ok(true)
    }
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_member && !self.start_member()? {
                return Ok(0);
            }
            let input = self.inner.fill_buf()?;
            let at_end = input.is_empty();
            let res = inflate(&mut self.state, input, out, MZFlush::None);
            self.inner.consume(res.bytes_consumed);
            match res.status {
                Ok(MZStatus::StreamEnd) => {
                    discard(&mut self.inner, 8)?; // CRC-32 and size
                    self.in_member = false;
                }
                Ok(_) | Err(MZError::Buf) if res.bytes_written + res.bytes_consumed > 0 => {}
                Ok(_) | Err(MZError::Buf) if at_end => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the gzip data ends early",
                    ));
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt gzip data",
                    ));
                }
            }
            if res.bytes_written > 0 {
                return Ok(res.bytes_written);
            }
        }
    }
}

/// Skips `n` bytes of a stream by reading them.
pub(super) fn discard<R: Read>(r: &mut R, n: u64) -> io::Result<()> {
    if io::copy(&mut r.take(n), &mut io::sink())? < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
