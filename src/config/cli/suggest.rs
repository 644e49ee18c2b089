//! "Did you mean": the known long flags an unknown one may have been meant
//! as, by kong's rule.

use super::super::error::ConfigError;

/// Every long flag this build knows, for "did you mean" suggestions.
const LONG_FLAGS: &[&str] = &[
    "help",
    "version",
    "worker-id",
    "api-key",
    "config-file",
    "backend",
    "log-level",
    "log-format",
    "no-cleanup",
    "volumes",
    "env",
    "max-concurrent-tasks",
    "idle-on-complete",
    "web-socket-url",
    "websocket-url",
    "server-root-url",
    "session-sharing-server-url",
    "drain-timeout",
    "task-timeout",
    "default-image",
    "sidecar-image",
    "image-pull-policy",
    "stop-grace",
    "prefetch-image",
    "image-archives",
    "sidecar-retention",
    "image-retention",
    "format",
    "target-dir",
];

/// An unknown flag, with the known ones it may have been meant as: those it
/// begins, or within two edits of it (kong's rule).
pub(super) fn unknown_flag(flag: &str) -> ConfigError {
    let suggestions = match flag.strip_prefix("--") {
        Some(name) if !name.is_empty() => LONG_FLAGS
            .iter()
            .filter(|known| known.starts_with(name) || edit_distance(known, name) <= 2)
            .map(|known| format!("--{known}"))
            .collect(),
        _ => Vec::new(),
    };
    ConfigError::UnknownFlag {
        flag: flag.to_owned(),
        suggestions,
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
