//! The tar header walk: `manifest.json` found in a `docker save` archive
//! by reading headers only (PAX and GNU long names and sizes honoured),
//! every other entry's contents seeked past (a plain file) or read and
//! dropped (a gzip stream). Reads; never holds more than one bounded entry.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::gunzip::{Gunzip, discard};
use super::skip::parse_manifest;
use super::{ManifestError, SavedImage};

/// Tar's block size: headers and padded contents.
const BLOCK: u64 = 512;
/// Largest `manifest.json` read (one entry is a few hundred bytes).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// Largest PAX or GNU long-name record read.
const MAX_META: u64 = 1024 * 1024;

/// The images of the archive at `path`, from its `manifest.json`.
pub fn read_manifest(path: &Path) -> Result<Vec<SavedImage>, ManifestError> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.seek(SeekFrom::Start(0))?;
    let manifest = if gzip {
        let mut reader = Gunzip::new(BufReader::with_capacity(64 * 1024, file));
        find_manifest(&mut reader, discard)?
    } else {
        find_manifest(&mut file, seek_past)?
    };
    match manifest {
        Some(bytes) => parse_manifest(&bytes),
        None => Err(ManifestError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "no manifest.json in the archive",
        ))),
    }
}

/// Skips `n` bytes of a seekable file.
pub(super) fn seek_past<R: Seek>(r: &mut R, n: u64) -> io::Result<()> {
    let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    r.seek(SeekFrom::Current(n)).map(drop)
}

/// Walks the tar headers of `r` up to `manifest.json` and returns its
/// contents; `skip` moves past the contents of every other entry. `None`
/// when the archive ends without one.
pub fn find_manifest<R: Read>(
    r: &mut R,
    skip: fn(&mut R, u64) -> io::Result<()>,
) -> Result<Option<Vec<u8>>, ManifestError> {
    // A PAX or GNU record's name and size for the entry after it.
    let (mut next_name, mut next_size) = (None, None);
    loop {
        let mut block = [0u8; BLOCK as usize];
        if !read_block(r, &mut block)? || block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let header = parse_header(&block)?;
        let padding = padded(header.size)? - header.size;
        match header.kind {
            b'x' | b'L' => {
                let data = read_at_most(r, header.size, MAX_META)?;
                skip(r, padding)?;
                if header.kind == b'L' {
                    next_name = Some(until_nul(&data).to_vec());
                } else {
                    let (name, size) = pax_records(&data);
                    next_name = name.or(next_name);
                    next_size = size.or(next_size);
                }
                continue;
            }
            _ => {}
        }
        let name = next_name.take().unwrap_or(header.name);
        let size = next_size.take().unwrap_or(header.size);
        if matches!(header.kind, b'0' | 0)
            && matches!(&name[..], b"manifest.json" | b"./manifest.json")
        {
            return read_at_most(r, size, MAX_MANIFEST).map(Some);
        }
        skip(r, padded(size)?)?;
    }
}

/// One tar header, the parts the walk needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) name: Vec<u8>,
    pub(super) size: u64,
    pub(super) kind: u8,
}

pub(super) fn parse_header(block: &[u8; BLOCK as usize]) -> Result<Header, ManifestError> {
    let stored = octal(&block[148..156]).ok_or(ManifestError::NotTar)?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return Err(ManifestError::NotTar);
    }
    let size = number(&block[124..136]).ok_or(ManifestError::NotTar)?;
    let mut name = until_nul(&block[..100]).to_vec();
    if &block[257..262] == b"ustar" {
        let prefix = until_nul(&block[345..500]);
        if !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
    }
    Ok(Header {
        name,
        size,
        kind: block[156],
    })
}

/// A tar number: octal digits between spaces and NULs, or base-256 (GNU,
/// first bit set) for sizes past 8 GiB.
pub(super) fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 == 0 {
        return octal(field);
    }
    if field[0] & 0x40 != 0 {
        return None; // negative
    }
    let mut n = u64::from(field[0] & 0x3f);
    for &b in &field[1..] {
        n = n.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some(n)
}

pub(super) fn octal(field: &[u8]) -> Option<u64> {
    let digits = field
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        n.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

fn padded(size: u64) -> Result<u64, ManifestError> {
    size.checked_next_multiple_of(BLOCK)
        .ok_or(ManifestError::TooBig(size))
}

/// The `path` and `size` of PAX records (`LEN key=value\n` each).
pub(super) fn pax_records(mut data: &[u8]) -> (Option<Vec<u8>>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    while let Some(space) = data.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&l| l > space + 1 && l <= data.len())
        else {
            break;
        };
        let record = &data[space + 1..len - 1];
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(value.to_vec());
        } else if let Some(value) = record.strip_prefix(b"size=") {
            size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        data = &data[len..];
    }
    (path, size)
}

/// Fills `block`; `false` when the input ends before its first byte.
fn read_block(r: &mut impl Read, block: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < block.len() {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_at_most(r: &mut impl Read, size: u64, max: u64) -> Result<Vec<u8>, ManifestError> {
    if size > max {
        return Err(ManifestError::TooBig(size));
    }
    let mut data = Vec::with_capacity(size as usize);
    r.take(size).read_to_end(&mut data)?;
    if (data.len() as u64) < size {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(data)
}
