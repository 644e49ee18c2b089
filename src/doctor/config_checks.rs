//! Checks on the configuration itself: the config file parses, the worker id
//! is present and allowed, an API key is present, no URL or header-bound
//! setting holds a CR, LF or NUL, and every volume's host path exists.
//!
//! Reads only the [`DoctorInput`] and the filesystem (for volume paths). It
//! must never print the API key, not even part of it.

use std::path::Path;

use super::{Check, DoctorInput, Reporter};
use crate::config::{
    ConfigError, VolumeMount, VolumeSource, check_conflicts, check_line_breaks, volume_warnings,
};

/// Config file, worker id and API key.
pub fn run(input: &DoctorInput, report: &mut Reporter<'_>) {
    report.add(config_file(input));
    report.add(worker_id(input));
    report.add(api_key(input));
    if let Err(e) = check_line_breaks(&input.config) {
        report.add(Check::fail(
            "line breaks",
            e.to_string(),
            "remove the CR, LF or NUL (a stray \\r from a file edited on Windows is the usual cause)",
        ));
    }
}

/// The config file (or flags only) parsed.
pub fn config_file(input: &DoctorInput) -> Check {
    match (&input.file_problem, &input.config_file) {
        (Some(e), _) => Check::fail("config", e.to_string(), file_fix(e)),
        (None, Some(path)) => Check::pass("config", format!("flags and {path} parse")),
        (None, None) => Check::pass("config", "flags parse (no --config-file given)"),
    }
}

fn file_fix(e: &ConfigError) -> String {
    match e {
        ConfigError::ReadFile { .. } => {
            "check the --config-file path and that this user may read it".into()
        }
        ConfigError::FileBackendUnsupported { .. } | ConfigError::MultipleBackends { .. } => {
            "configure backend.docker only; this build runs the Docker backend".into()
        }
        ConfigError::TabIndent { line, .. } => format!(
            "replace the tab(s) at the start of line {line} with spaces (YAML indents with spaces only)"
        ),
        ConfigError::ParseFile { .. } => {
            "correct the YAML at the line named above (see the config file reference); unknown keys are errors".into()
        }
        _ => {
            "correct the key named above (see `oz-agent-worker --help` and the config file reference); unknown keys are errors".into()
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

/// One check per configured volume, then one if two cannot be mounted together.
pub fn volumes(input: &DoctorInput, report: &mut Reporter<'_>) {
    for v in &input.config.docker.volumes {
        report.add(volume(v));
    }
    if let Err(conflict) = check_conflicts(&input.config.docker.volumes) {
        report.add(Check::fail(
            "volumes",
            conflict.to_string(),
            "give each -v / backend.docker.volumes entry its own container path",
        ));
    }
}

/// Whether a volume's host side exists. A named volume is a warning (one
/// volume shared by every task, Docker creates it when missing); an
/// anonymous one is new for each task container.
pub fn volume(v: &VolumeMount) -> Check {
    let name = format!("volume {}", v.to_bind());
    let host = match &v.source {
        VolumeSource::HostPath(path) => path,
        VolumeSource::Named(_) => {
            let warning = volume_warnings(std::slice::from_ref(v), &|_| None);
            let detail = warning.first().map(|w| w.detail()).unwrap_or_default();
            return Check::warn(name, detail);
        }
        VolumeSource::Anonymous => {
            return Check::pass(
                name,
                "an anonymous volume, new for each task container and removed with it",
            );
        }
    };
    match Path::new(host).try_exists() {
        Ok(true) => Check::pass(name, format!("host path {host} exists")),
        Ok(false) => Check::fail(
            name,
            format!("host path {host} does not exist"),
            format!("create {host} on this host, or correct the -v / backend.docker.volumes entry"),
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot look at host path {host}: {e}"),
            "make the path readable by the worker's user",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn mount(host: &str) -> VolumeMount {
        crate::config::parse_volume(&format!("{host}:/data:ro")).unwrap()
    }

    #[test]
    fn a_tab_gets_its_own_fix() {
        let Ok(crate::config::Command::Doctor(mut input)) =
            crate::config::parse(vec!["doctor".into()], &|_| None)
        else {
            panic!("`doctor` did not parse as the doctor");
        };
        input.config_file = Some("c.yaml".into());
        input.file_problem = Some(ConfigError::TabIndent {
            path: "c.yaml".into(),
            line: 3,
        });
        assert_eq!(
            config_file(&input).render(),
            "FAIL config: failed to parse config file c.yaml: line 3: tabs are not allowed for indentation; use spaces\n  fix: replace the tab(s) at the start of line 3 with spaces (YAML indents with spaces only)\n"
        );
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
            "WARN volume cache:/data:ro: `cache` is not a host path but a named Docker volume, shared by every task this worker runs; write an absolute path to bind a host directory\n"
        );
        let anonymous = volume(&crate::config::parse_volume("/scratch").unwrap());
        assert_eq!(
            anonymous.render(),
            "PASS volume /scratch: an anonymous volume, new for each task container and removed with it\n"
        );
    }
}
