//! Checks on the configuration itself: the config file parses, the worker id
//! is present and allowed, an API key is present, and every volume's host
//! path exists.
//!
//! Reads only the [`DoctorInput`] and the filesystem (for volume paths). It
//! must never print the API key, not even part of it.

use std::path::Path;

use super::{Check, DoctorInput, Reporter};
use crate::config::{ConfigError, VolumeMount};

/// Config file, worker id and API key.
pub fn run(input: &DoctorInput, report: &mut Reporter<'_>) {
    report.add(config_file(input));
    report.add(worker_id(input));
    report.add(api_key(input));
}

/// The config file (or flags only) parsed.
pub fn config_file(input: &DoctorInput) -> Check {
    match (&input.file_problem, &input.config_file) {
        (Some(e), _) => Check::fail("config", e.to_string(), file_fix(e)),
        (None, Some(path)) => Check::pass("config", format!("flags and {path} parse")),
        (None, None) => Check::pass("config", "flags parse (no --config-file given)"),
    }
}

fn file_fix(e: &ConfigError) -> &'static str {
    match e {
        ConfigError::ReadFile { .. } => {
            "check the --config-file path and that this user may read it"
        }
        ConfigError::FileBackendUnsupported { .. } | ConfigError::MultipleBackends { .. } => {
            "configure backend.docker only; this build runs the Docker backend"
        }
        _ => {
            "correct the key named above (see `oz-agent-worker --help` and the config file reference); unknown keys are errors"
        }
    }
}

/// The worker id.
pub fn worker_id(input: &DoctorInput) -> Check {
    match &input.worker_id_problem {
        None => Check::pass("worker id", format!("`{}`", input.config.worker_id)),
        Some(e @ ConfigError::ReservedWorkerId) => Check::fail(
            "worker id",
            e.to_string(),
            "choose an id that does not start with `warp`",
        ),
        Some(e) => Check::fail(
            "worker id",
            e.to_string(),
            "pass --worker-id ID or set worker_id in the config file; tasks are routed to this id",
        ),
    }
}

/// The API key: present or not, never its value.
pub fn api_key(input: &DoctorInput) -> Check {
    match &input.api_key_problem {
        None => Check::pass("api key", "present (not shown)"),
        Some(e) => Check::fail(
            "api key",
            e.to_string(),
            "create a team API key in Warp and pass it with --api-key or the WARP_API_KEY environment variable",
        ),
    }
}

/// One check per configured volume.
pub fn volumes(input: &DoctorInput, report: &mut Reporter<'_>) {
    for v in &input.config.docker.volumes {
        report.add(volume(v));
    }
}

/// Whether a volume's host side exists. A host side without a leading `/`
/// is a named volume, which Docker creates on first use.
pub fn volume(v: &VolumeMount) -> Check {
    let name = format!("volume {}", v.to_bind());
    if !v.host.starts_with('/') {
        return Check::pass(
            name,
            format!(
                "`{}` is a named volume (Docker creates it when missing)",
                v.host
            ),
        );
    }
    match Path::new(&v.host).try_exists() {
        Ok(true) => Check::pass(name, format!("host path {} exists", v.host)),
        Ok(false) => Check::fail(
            name,
            format!("host path {} does not exist", v.host),
            format!(
                "create {} on this host, or correct the -v / backend.docker.volumes entry",
                v.host
            ),
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot look at host path {}: {e}", v.host),
            "make the path readable by the worker's user",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn mount(host: &str) -> VolumeMount {
        VolumeMount {
            host: host.into(),
            container: "/data".into(),
            read_only: true,
            explicit_mode: true,
        }
    }

    #[test]
    fn volume_paths() {
        let tmp = std::env::temp_dir();
        let tmp = tmp.to_str().unwrap();
        let ok = volume(&mount(tmp));
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(ok.detail, format!("host path {tmp} exists"));
        let missing = volume(&mount("/nonexistent/oz-doctor"));
        assert_eq!(
            missing.render(),
            "FAIL volume /nonexistent/oz-doctor:/data:ro: host path /nonexistent/oz-doctor does not exist\n  fix: create /nonexistent/oz-doctor on this host, or correct the -v / backend.docker.volumes entry\n"
        );
        let named = volume(&mount("cache"));
        assert_eq!(
            named.render(),
            "PASS volume cache:/data:ro: `cache` is a named volume (Docker creates it when missing)\n"
        );
    }
}
