//! Image references: parsing, normalisation, registry mirrors, and the
//! names derived from a reference (`shared/spec/ENGINE.md` "References",
//! `shared/spec/TASK.md` §2–§3).
//!
//! Owns [`ImageRef`] (registry, repository, tag or digest, as the docker CLI
//! normalises them), the credential key of a registry, the `registry_mirrors`
//! rewrite and the sidecar volume name. Pure: no I/O, no logging; it must not
//! know how images are pulled or where credentials live.

use std::collections::BTreeMap;
use std::fmt;

use crate::untrusted::Escaped;

/// Docker Hub's registry name after normalisation.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's key in the Docker client config and credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
const LEGACY_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// distribution/reference's `NameTotalLengthMax`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    registry: String,
    repository: String,
    /// Either `sha256:…` style digest (wins over any tag) or a tag.
    version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    Tag(String),
    Digest(String),
}

/// Why an image reference or a mirror entry is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// The reference is empty.
    Empty,
    /// The reference does not follow the `[registry/]path[:tag][@digest]` grammar.
    InvalidFormat {
        /// The reference as given.
        reference: String,
    },
    /// A path component has upper-case letters.
    Uppercase {
        /// The reference as given.
        reference: String,
    },
    /// `registry/path` is longer than 255 characters.
    NameTooLong {
        /// The reference as given.
        reference: String,
    },
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    InvalidTag {
        /// The reference as given.
        reference: String,
    },
    /// The digest is not `sha256:` + 64 lower-case hex digits (or sha384/sha512).
    InvalidDigest {
        /// The reference as given.
        reference: String,
    },
    /// A `registry_mirrors` entry is not `registry[/path]` on both sides, or
    /// its rewrite gives no valid reference.
    InvalidMirror {
        /// The entry's key.
        prefix: String,
        /// The entry's value.
        replacement: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The trailing words are distribution/reference's own error texts.
        match self {
            Self::Empty => f.write_str("invalid image reference \"\": invalid reference format"),
            Self::InvalidFormat { reference } => {
                write!(
                    f,
                    "invalid image reference {:?}: invalid reference format",
                    Escaped(reference)
                )
            }
            Self::Uppercase { reference } => write!(
                f,
                "invalid image reference {:?}: repository name must be lowercase",
                Escaped(reference)
            ),
            Self::NameTooLong { reference } => write!(
                f,
                "invalid image reference {:?}: repository name must not be more than 255 characters",
                Escaped(reference)
            ),
            Self::InvalidTag { reference } => {
                write!(
                    f,
                    "invalid image reference {:?}: invalid tag format",
                    Escaped(reference)
                )
            }
            Self::InvalidDigest { reference } => {
                write!(
                    f,
                    "invalid image reference {:?}: invalid digest format",
                    Escaped(reference)
                )
            }
            Self::InvalidMirror {
                prefix,
                replacement,
                problem,
            } => write!(
                f,
                "invalid registry_mirrors entry \"{prefix}: {replacement}\": {problem}"
            ),
        }
    }
}

impl std::error::Error for ReferenceError {}

impl ImageRef {
    /// Parses and normalises a reference the way the docker CLI does
    /// (`ubuntu` → `docker.io/library/ubuntu:latest`).
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err = |make: fn(String) -> ReferenceError| make(reference.to_owned());
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) if valid_digest(digest) => (rest, Some(digest)),
            Some(_) => return Err(err(|reference| ReferenceError::InvalidDigest { reference })),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(err(|reference| ReferenceError::InvalidTag { reference }));
        }
        let (registry, repository) = split_name(name).map_err(|e| match e {
            NameProblem::Uppercase => ReferenceError::Uppercase {
                reference: reference.to_owned(),
            },
            NameProblem::Format => ReferenceError::InvalidFormat {
                reference: reference.to_owned(),
            },
        })?;
        // Like distribution/reference, the limit applies to the normalised
        // name, so what parses here also parses back from its Display
        // (found by fuzzing).
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(err(|reference| ReferenceError::NameTooLong { reference }));
        }
        let version = match (digest, tag) {
            (Some(d), _) => Version::Digest(d.to_owned()),
            (None, Some(t)) => Version::Tag(t.to_owned()),
            (None, None) => Version::Tag(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            version,
        })
    }

    /// The registry `host[:port]`, `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`: the `fromImage` of `POST /images/create`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The `tag` of `POST /images/create`: the tag, or `sha256:…` for a digest.
    pub fn tag_or_digest(&self) -> &str {
        match &self.version {
            Version::Tag(t) | Version::Digest(t) => t,
        }
    }

    /// True when the reference pins a digest.
    pub fn is_digest(&self) -> bool {
        matches!(self.version, Version::Digest(_))
    }

    /// The repository in the docker CLI's short form, without tag or digest:
    /// `ubuntu`, `warpdotdev/warp-agent`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(official) if !official.contains('/') => official.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// True for Docker Hub references.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The registry's key in the Docker client config and credential helpers.
    pub fn credential_key(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_AUTH_KEY
        } else {
            &self.registry
        }
    }

    /// Applies `registry_mirrors`: the longest prefix matching whole path
    /// components of `registry/repository` is replaced. No match ⇒ unchanged.
    pub fn with_mirrors(&self, mirrors: &BTreeMap<String, String>) -> Result<Self, ReferenceError> {
        let name = self.name();
        let mut best: Option<(Prefix, &String, &String)> = None;
        for (key, value) in mirrors {
            let prefix = parse_prefix(key).map_err(|problem| mirror_error(key, value, problem))?;
            let joined = prefix.joined();
            let matches = name == joined
                || name
                    .strip_prefix(&joined)
                    .is_some_and(|rest| rest.starts_with('/'));
            let longer = best
                .as_ref()
                .is_none_or(|(b, _, _)| joined.len() > b.joined().len());
            if matches && longer {
                best = Some((prefix, key, value));
            }
        }
        let Some((prefix, key, value)) = best else {
            return Ok(self.clone());
        };
        let target = parse_prefix(value).map_err(|problem| mirror_error(key, value, problem))?;
        let rest = name[prefix.joined().len()..].trim_start_matches('/');
        let mut repository = [target.path.as_str(), rest]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        if repository.is_empty() {
            return Err(mirror_error(
                key,
                value,
                "the rewrite leaves no repository path",
            ));
        }
        if target.registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("{OFFICIAL_PREFIX}{repository}");
        }
        if target.registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(mirror_error(
                key,
                value,
                "the rewritten name is longer than 255 characters",
            ));
        }
        Ok(Self {
            registry: target.registry,
            repository,
            version: self.version.clone(),
        })
    }
}

/// Checks every `registry_mirrors` entry, so a bad one stops the worker at start.
pub fn check_mirrors(mirrors: &BTreeMap<String, String>) -> Result<(), ReferenceError> {
    for (key, value) in mirrors {
        parse_prefix(key).map_err(|problem| mirror_error(key, value, problem))?;
        parse_prefix(value).map_err(|problem| mirror_error(key, value, problem))?;
    }
    Ok(())
}

/// The full normalised reference, e.g. `docker.io/library/ubuntu:22.04`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Version::Tag(t) => write!(f, "{}/{}:{t}", self.registry, self.repository),
            Version::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repository),
        }
    }
}

/// The volume holding a sidecar image's filesystem (TASK.md §3): the
/// repository's short form with every character outside `[a-zA-Z0-9_.-]`
/// turned into `-`, then `-` and the first 12 hex digits of the digest from
/// `RepoDigests[0]`, else of the image id. `None` when the image has neither.
pub fn sidecar_volume_name(image: &str, repo_digests: &[String], image_id: &str) -> Option<String> {
    // Like the Go worker, an unparsable name is used as written.
    let short = ImageRef::parse(image).map_or_else(|_| image.to_owned(), |r| r.familiar_name());
    let base = volume_safe(&short);
    let digest = repo_digests
        .first()
        .and_then(|d| d.split_once('@'))
        .map(|(_, digest)| digest)
        .filter(|d| !d.is_empty())
        .or(Some(image_id).filter(|id| !id.is_empty()))?;
    let suffix = match digest.split_once(':') {
        Some((_, hex)) if !hex.contains(':') => hex.chars().take(12).collect(),
        _ => digest.to_owned(),
    };
    // The digest comes from the daemon, but a volume name must hold whatever
    // it says (found by fuzzing), so the suffix is mapped like the base.
    Some(format!("{base}-{}", volume_safe(&suffix)))
}

/// Every character outside `[a-zA-Z0-9_.-]` (what Docker allows in a volume
/// name) turned into `-`.
fn volume_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

enum NameProblem {
    Uppercase,
    Format,
}

/// Whether the daemon reads this first path component as a registry.
fn is_registry_host(first: &str) -> bool {
    first == "localhost" || first.contains('.') || first.contains(':')
}

/// Splits `[registry/]path` and normalises Docker Hub names.
fn split_name(name: &str) -> Result<(String, String), NameProblem> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry_host(first) => {
            if !valid_domain(first) {
                return Err(NameProblem::Format);
            }
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    check_path(path)?;
    let registry = if registry == LEGACY_HUB {
        DOCKER_HUB
    } else {
        registry
    };
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path.to_owned()
    };
    Ok((registry.to_owned(), path))
}

fn check_path(path: &str) -> Result<(), NameProblem> {
    let mut uppercase = false;
    for component in path.split('/') {
        if valid_path_component(component) {
            continue;
        }
        if valid_path_component(&component.to_ascii_lowercase()) {
            uppercase = true;
        } else {
            return Err(NameProblem::Format);
        }
    }
    if uppercase {
        Err(NameProblem::Uppercase)
    } else {
        Ok(())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// `host[:port]`: dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// labels or a bracketed IPv6 address, then an optional numeric port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => ("", after.strip_prefix(':').unwrap_or("x")),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, p),
            None => (d, "0"),
        }
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    let host_ok = d.starts_with('[') || host.split('.').all(label_ok);
    host_ok && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !t.is_empty()
        && t.len() <= TAG_MAX
        && t.bytes().next().is_some_and(word)
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// The go-digest algorithms the daemon accepts, with lower-case hex of their length.
fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A mirror key or value: a registry, optionally followed by a path.
struct Prefix {
    registry: String,
    path: String,
}

impl Prefix {
    fn joined(&self) -> String {
        if self.path.is_empty() {
            self.registry.clone()
        } else {
            format!("{}/{}", self.registry, self.path)
        }
    }
}

fn parse_prefix(s: &str) -> Result<Prefix, &'static str> {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (registry, path) = s.split_once('/').unwrap_or((s, ""));
    if !valid_domain(registry) {
        return Err("each side must start with a registry host[:port]");
    }
    // The daemon reads a first component without `.` or `:` (other than
    // `localhost`) as a Docker Hub path, so `mirror/...` would be pulled
    // from Docker Hub instead of the mirror (found by fuzzing).
    if !is_registry_host(registry) {
        return Err(
            "the registry host must contain a `.` or a `:port`, or be localhost; \
             a bare name is a Docker Hub path",
        );
    }
    if !path.is_empty() && check_path(path).is_err() {
        return Err("the path after the registry must be lower-case path components");
    }
    let registry = if registry == LEGACY_HUB {
        DOCKER_HUB
    } else {
        registry
    };
    Ok(Prefix {
        registry: registry.to_owned(),
        path: path.to_owned(),
    })
}

fn mirror_error(prefix: &str, replacement: &str, problem: &'static str) -> ReferenceError {
    ReferenceError::InvalidMirror {
        prefix: prefix.to_owned(),
        replacement: replacement.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests;
