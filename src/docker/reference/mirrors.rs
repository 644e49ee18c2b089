//! The `registry_mirrors` rewrite: a reference's longest matching
//! `registry[/path]` prefix replaced by its mirror, and every entry checked
//! at start. Pure.

use std::collections::BTreeMap;

use super::grammar::{check_path, is_registry_host, valid_domain};
use super::{DOCKER_HUB, ImageRef, LEGACY_HUB, NAME_MAX, OFFICIAL_PREFIX, ReferenceError};

impl ImageRef {
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
