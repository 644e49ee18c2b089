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
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, error, info};

use crate::docker::{Docker, DockerError, LoadReport};
use crate::execute::progress::{EVERY, Throttle, rate, seconds, size};
use crate::untrusted::Escaped;

mod gunzip;
mod skip;
mod tar;

pub use gunzip::Gunzip;
pub use skip::{is_loaded, parse_manifest};
pub use tar::{find_manifest, read_manifest};

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

#[cfg(test)]
mod tests;
