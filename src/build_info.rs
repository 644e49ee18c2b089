//! What this binary was built from, as `build.rs` recorded it: version, git
//! revision, build date and target triple. Read by `--version`, the start-up
//! line, `oz_worker_info{version}` and the telemetry resource.
//!
//! Owns only the formatting of those facts; it must not look anything up at
//! run time. `build.rs` documents the environment overrides
//! (`OZ_BUILD_VERSION`, `OZ_BUILD_REVISION`, `SOURCE_DATE_EPOCH`).

use crate::calendar::civil_from_days;

/// The version (`OZ_BUILD_VERSION`, default the crate version).
pub const VERSION: &str = env!("OZ_BUILD_VERSION");
/// The git revision, 12 hex digits; empty when unknown.
pub const REVISION: &str = env!("OZ_BUILD_REVISION");
/// The build date in seconds since 1970; empty when unknown.
pub const EPOCH: &str = env!("OZ_BUILD_EPOCH");
/// The target triple, e.g. `x86_64-unknown-linux-musl`.
pub const TARGET: &str = env!("OZ_BUILD_TARGET");

/// The build's facts, so the formatting can be tested with any values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo<'a> {
    /// Version.
    pub version: &'a str,
    /// Revision; empty when unknown.
    pub revision: &'a str,
    /// Seconds since 1970; `None` when unknown.
    pub epoch: Option<u64>,
    /// Target triple.
    pub target: &'a str,
}

/// This binary's build.
pub fn this() -> BuildInfo<'static> {
    BuildInfo {
        version: VERSION,
        revision: REVISION,
        epoch: EPOCH.parse().ok(),
        target: TARGET,
    }
}

impl BuildInfo<'_> {
    /// The version with the revision and build day as semver build
    /// metadata, e.g. `0.1.0+3f9c2a1b7d4e.2026-11-21`: the `version` label of
    /// `oz_worker_info` and the resource's `service.version`.
    pub fn full_version(&self) -> String {
        let mut out = self.version.to_owned();
        let mut sep = '+';
        if !self.revision.is_empty() {
            out.push(sep);
            out.push_str(self.revision);
            sep = '.';
        }
        if let Some(epoch) = self.epoch {
            out.push(sep);
            out.push_str(&day(epoch));
        }
        out
    }

    /// One line: `0.1.0 (revision 3f9c2a1b7d4e, built 2026-11-21T09:01:01Z,
    /// x86_64-unknown-linux-musl)`.
    pub fn describe(&self) -> String {
        let revision = if self.revision.is_empty() {
            "unknown"
        } else {
            self.revision
        };
        let built = self.epoch.map_or_else(|| "unknown".to_owned(), timestamp);
        format!(
            "{} (revision {revision}, built {built}, {})",
            self.version, self.target
        )
    }
}

fn day(epoch: u64) -> String {
    let (y, m, d) = civil_from_days((epoch / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

fn timestamp(epoch: u64) -> String {
    let rem = epoch % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day(epoch),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(revision: &'static str, epoch: Option<u64>) -> BuildInfo<'static> {
        BuildInfo {
            version: "0.1.0",
            revision,
            epoch,
            target: "x86_64-unknown-linux-musl",
        }
    }

    #[test]
    fn full_version_carries_what_is_known() {
        let both = info("3f9c2a1b7d4e", Some(1_795_251_661));
        assert_eq!(both.full_version(), "0.1.0+3f9c2a1b7d4e.2026-11-21");
        assert_eq!(info("", Some(0)).full_version(), "0.1.0+1970-01-01");
        assert_eq!(info("abc", None).full_version(), "0.1.0+abc");
        assert_eq!(info("", None).full_version(), "0.1.0");
    }

    #[test]
    fn describe_names_every_fact() {
        assert_eq!(
            info("3f9c2a1b7d4e", Some(1_795_251_661)).describe(),
            "0.1.0 (revision 3f9c2a1b7d4e, built 2026-11-21T09:01:01Z, x86_64-unknown-linux-musl)"
        );
        assert_eq!(
            info("", None).describe(),
            "0.1.0 (revision unknown, built unknown, x86_64-unknown-linux-musl)"
        );
    }

    #[test]
    fn this_build_is_stamped() {
        assert!(!TARGET.is_empty());
        assert!(this().describe().starts_with(VERSION));
    }
}
