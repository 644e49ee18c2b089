//! Image references: parsing, normalisation, registry mirrors, and the
//! names derived from a reference (`shared/spec/ENGINE.md` "References",
//! `shared/spec/TASK.md` §2–§3).
//!
//! Owns [`ImageRef`] (registry, repository, tag or digest, as the docker CLI
//! normalises them), the credential key of a registry, the `registry_mirrors`
//! rewrite and the sidecar volume name. Pure: no I/O, no logging; it must not
//! know how images are pulled or where credentials live.

use std::fmt;

use crate::untrusted::Escaped;
use grammar::{NameProblem, split_name, valid_digest, valid_tag};
pub use mirrors::check_mirrors;

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

mod grammar;
mod mirrors;

#[cfg(test)]
mod tests;
