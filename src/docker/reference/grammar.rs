//! The reference grammar of distribution/reference, as the daemon checks
//! it: registry hosts, path components, tags and digests, and the Docker
//! Hub normalisation of a name. Pure checks; no error wording here.

use super::{DOCKER_HUB, LEGACY_HUB, OFFICIAL_PREFIX, TAG_MAX};

/// Why a name is refused.
pub(super) enum NameProblem {
    /// A path component with upper-case letters (else valid).
    Uppercase,
    /// Not a name the daemon accepts.
    Format,
}

/// Whether the daemon reads this first path component as a registry.
pub(super) fn is_registry_host(first: &str) -> bool {
    first == "localhost" || first.contains('.') || first.contains(':')
}

/// Splits `[registry/]path` and normalises Docker Hub names.
pub(super) fn split_name(name: &str) -> Result<(String, String), NameProblem> {
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

pub(super) fn check_path(path: &str) -> Result<(), NameProblem> {
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
pub(super) fn valid_domain(d: &str) -> bool {
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
pub(super) fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !t.is_empty()
        && t.len() <= TAG_MAX
        && t.bytes().next().is_some_and(word)
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// The go-digest algorithms the daemon accepts, with lower-case hex of their length.
pub(super) fn valid_digest(d: &str) -> bool {
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
