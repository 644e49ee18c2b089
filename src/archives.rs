//! Image archives loaded at start (`image_archives`, `--image-archives DIR`):
//! the air-gapped host's images arrive as `docker save` files, and the
//! worker loads them itself through the Engine API, so the host needs no
//! Docker CLI.
//!
//! Owns finding `*.tar` and `*.tar.gz` in the directory, reading an
//! archive's `manifest.json` without reading the archive (tar headers
//! walked and file contents seeked past; gzip inflated as a stream in
//! bounded memory), the decision to skip an archive whose images the daemon
//! already has, the load (`POST /images/load`, the file streamed) and its
//! log lines. It must not stop the start (every failure is one ERROR line),
//! hold an archive in memory, or touch images in any other way (no pull,
//! tag or removal).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, error, info};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use serde::Deserialize;

use crate::docker::{Docker, DockerError, LoadReport};
use crate::execute::progress::{EVERY, Throttle, rate, seconds, size};
use crate::untrusted::Escaped;

/// Tar's block size: headers and padded contents.
const BLOCK: u64 = 512;
/// Largest `manifest.json` read (one entry is a few hundred bytes).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// Largest PAX or GNU long-name record read.
const MAX_META: u64 = 1024 * 1024;
/// Names listed in one log line; the rest are counted.
const NAMES_SHOWN: usize = 10;

/// One image of a `docker save` manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    /// `sha256:<hex>` of its config blob: the image id.
    pub id: String,
    /// Its `RepoTags` (empty for an image saved by id).
    pub tags: Vec<String>,
}

/// Why an archive's manifest could not be read (the archive is then loaded
/// anyway: the daemon's answer is the judge).
#[derive(Debug)]
pub enum ManifestError {
    /// Reading or inflating the file failed.
    Io(io::Error),
    /// A header's checksum or numbers are wrong: not a tar archive.
    NotTar,
    /// `manifest.json` (or a tar extension record) is larger than makes sense.
    TooBig(u64),
    /// `manifest.json` is not the JSON `docker save` writes.
    Json(serde_json::Error),
    /// An entry's `Config` is not the name of a sha256 blob.
    Config(String),
    /// `manifest.json` lists no image.
    Empty,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::NotTar => write!(f, "not a tar archive (bad header)"),
            Self::TooBig(n) => write!(f, "a {n}-byte manifest or header record is too large"),
            Self::Json(e) => write!(f, "manifest.json is not a docker save manifest: {e}"),
            Self::Config(c) => write!(
                f,
                "manifest.json names the config {:?}, not a sha256 blob",
                Escaped(c)
            ),
            Self::Empty => write!(f, "manifest.json lists no image"),
        }
    }
}

impl From<io::Error> for ManifestError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Why an archive (or the directory) was not loaded.
#[derive(Debug)]
pub enum ArchiveError {
    /// The directory cannot be listed.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The archive cannot be opened.
    Open {
        /// The archive.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The daemon refused the archive, or the upload failed.
    Load {
        /// The archive.
        file: PathBuf,
        /// The daemon's or the upload's error.
        source: DockerError,
    },
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir { dir, source } => write!(
                f,
                "cannot read the image archive directory {}: {source}; starting without loading any",
                shown_path(dir)
            ),
            Self::Open { file, source } => write!(
                f,
                "cannot read image archive {}: {source}; not loaded",
                shown_path(file)
            ),
            Self::Load { file, source } => write!(
                f,
                "image archive {} was not loaded: {source}",
                shown_path(file)
            ),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// What became of one archive.
#[derive(Debug)]
pub enum Outcome {
    /// Loaded: what the daemon said it loaded, the file's bytes, the time taken.
    Loaded(LoadReport, u64, Duration),
    /// Not loaded again: the daemon has every image of it (tags, or ids of untagged ones).
    Skipped(Vec<String>),
    /// Not loaded.
    Failed(ArchiveError),
}

/// One archive of the directory and what became of it.
#[derive(Debug)]
pub struct ArchiveResult {
    /// The archive.
    pub path: PathBuf,
    /// What became of it.
    pub outcome: Outcome,
}

/// Loads every `*.tar` and `*.tar.gz` of `dir` (by name order) that the
/// daemon does not already have, logging progress and one line per archive.
/// `Err` (logged too) only when the directory cannot be listed.
pub fn load_dir(docker: &Docker, dir: &Path) -> Result<Vec<ArchiveResult>, ArchiveError> {
    let paths = match list_archives(dir) {
        Ok(paths) => paths,
        Err(source) => {
            let e = ArchiveError::Dir {
                dir: dir.to_owned(),
                source,
            };
            error!("{e}");
            return Err(e);
        }
    };
    if paths.is_empty() {
        info!("no image archives (*.tar, *.tar.gz) in {}", shown_path(dir));
    }
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let outcome = load_one(docker, &path);
        let file = shown_path(&path);
        match &outcome {
            Outcome::Loaded(report, bytes, took) => info!(
                "loaded image archive {file}: {} ({} in {}, {})",
                names(&report.loaded),
                size(*bytes),
                seconds(*took),
                rate(*bytes, *took)
            ),
            Outcome::Skipped(images) => info!(
                "image archive {file}: the daemon already has its images ({}); not loading it again",
                names(images)
            ),
            Outcome::Failed(e) => error!("{e}"),
        }
        results.push(ArchiveResult { path, outcome });
    }
    Ok(results)
}

/// The archives of `dir`, sorted: regular files (or links to them) named
/// `*.tar` or `*.tar.gz`.
pub fn list_archives(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if (name.ends_with(".tar") || name.ends_with(".tar.gz"))
            && std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn load_one(docker: &Docker, path: &Path) -> Outcome {
    let file = shown_path(path);
    match read_manifest(path) {
        Ok(images) => {
            let mut id_of = |name: &str| docker.image_inspect(name).ok().flatten().map(|i| i.id);
            if is_loaded(&images, &mut id_of) {
                return Outcome::Skipped(image_names(&images));
            }
        }
        Err(e) => debug!("image archive {file}: cannot read its manifest ({e}); loading it"),
    }
    let (mut f, len) = match File::open(path).and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok((len, f)) => (f, len),
        Err(source) => {
            return Outcome::Failed(ArchiveError::Open {
                file: path.to_owned(),
                source,
            });
        }
    };
    info!("loading image archive {file} ({})", size(len));
    let start = Instant::now();
    let mut body = Progress {
        inner: &mut f,
        file: &file,
        total: len,
        bytes: 0,
        reported: 0,
        throttle: Throttle::new(start, EVERY),
    };
    match docker.image_load(&mut body) {
        Ok(report) => Outcome::Loaded(report, body.bytes, start.elapsed()),
        Err(source) => Outcome::Failed(ArchiveError::Load {
            file: path.to_owned(),
            source,
        }),
    }
}

/// The archive as it is uploaded, logging a progress line every [`EVERY`].
struct Progress<'a> {
    inner: &'a mut File,
    file: &'a str,
    total: u64,
    bytes: u64,
    reported: u64,
    throttle: Throttle,
}

impl Read for Progress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if let Some(since) = self.throttle.due(Instant::now()) {
            info!(
                "loading image archive {}: {} of {}, {}",
                self.file,
                size(self.bytes),
                size(self.total),
                rate(self.bytes - self.reported, since)
            );
            self.reported = self.bytes;
        }
        Ok(n)
    }
}

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
fn seek_past<R: Seek>(r: &mut R, n: u64) -> io::Result<()> {
    let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    r.seek(SeekFrom::Current(n)).map(drop)
}

/// Skips `n` bytes of a stream by reading them.
fn discard<R: Read>(r: &mut R, n: u64) -> io::Result<()> {
    if io::copy(&mut r.take(n), &mut io::sink())? < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
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
struct Header {
    name: Vec<u8>,
    size: u64,
    kind: u8,
}

fn parse_header(block: &[u8; BLOCK as usize]) -> Result<Header, ManifestError> {
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
fn number(field: &[u8]) -> Option<u64> {
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

fn octal(field: &[u8]) -> Option<u64> {
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
fn pax_records(mut data: &[u8]) -> (Option<Vec<u8>>, Option<u64>) {
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

/// The images a `docker save` manifest lists.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<SavedImage>, ManifestError> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    if entries.is_empty() {
        return Err(ManifestError::Empty);
    }
    entries
        .into_iter()
        .map(|e| {
            let id = config_id(&e.config).ok_or(ManifestError::Config(e.config))?;
            Ok(SavedImage {
                id,
                tags: e.repo_tags.unwrap_or_default(),
            })
        })
        .collect()
}

/// `sha256:<hex>` of `<hex>.json` (Engine ≤ 24) or `blobs/sha256/<hex>`
/// (the OCI layout of Engine 25 and later).
fn config_id(config: &str) -> Option<String> {
    let config = config.strip_prefix("./").unwrap_or(config);
    let hex = config
        .strip_prefix("blobs/sha256/")
        .or_else(|| config.strip_suffix(".json"))?;
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_hex.then(|| format!("sha256:{hex}"))
}

/// Whether the daemon has exactly these images: each id present and each
/// tag naming that id. `id_of` gives the id a name or id resolves to.
pub fn is_loaded(images: &[SavedImage], id_of: &mut dyn FnMut(&str) -> Option<String>) -> bool {
    !images.is_empty()
        && images.iter().all(|image| {
            let is_it = |found: Option<String>| found.as_deref() == Some(image.id.as_str());
            is_it(id_of(&image.id)) && image.tags.iter().all(|tag| is_it(id_of(tag)))
        })
}

/// Tags of the images, or the id of an untagged one.
fn image_names(images: &[SavedImage]) -> Vec<String> {
    images
        .iter()
        .flat_map(|i| {
            if i.tags.is_empty() {
                vec![i.id.clone()]
            } else {
                i.tags.clone()
            }
        })
        .collect()
}

/// `a, b, c and 4 more`, each escaped.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        return "no image named in the daemon's reply".into();
    }
    let mut out = list
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| Escaped(n).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NAMES_SHOWN {
        out.push_str(&format!(" and {} more", list.len() - NAMES_SHOWN));
    }
    out
}

fn shown_path(path: &Path) -> String {
    Escaped(&path.display().to_string()).to_string()
}

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

#[cfg(test)]
#[path = "archives_tests.rs"]
mod tests;
