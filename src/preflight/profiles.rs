//! The `security_opt` entries that name something outside the worker: a
//! seccomp profile file, which the Engine API wants as JSON text (the docker
//! CLI reads the file for `--security-opt seccomp=PATH`; the daemon does
//! not, and refuses the path), and an AppArmor profile, which must be loaded
//! in the kernel of the daemon's host.
//!
//! Reads the profile file and the kernel's list of loaded AppArmor profiles;
//! no Docker calls, no logging. Everything else in `security_opt`
//! (`no-new-privileges`, `label=...`) passes through untouched.

use std::fmt;
use std::path::Path;

/// Largest seccomp profile read (Docker's default profile is ~ 20 KB).
pub const MAX_PROFILE_BYTES: u64 = 1024 * 1024;
/// Where the kernel lists loaded AppArmor profiles.
pub const APPARMOR_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// What a `security_opt` entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt<'a> {
    /// `seccomp=PATH`: a profile file to read and send as JSON.
    SeccompFile(&'a str),
    /// `seccomp={...}`: a profile given inline.
    SeccompInline(&'a str),
    /// `seccomp=unconfined` / `seccomp=builtin`: understood by the daemon.
    SeccompKeyword(&'a str),
    /// `apparmor=NAME`.
    AppArmor(&'a str),
    /// Anything else, passed through.
    Other,
}

/// Classifies one entry. Docker accepts `key=value` and the older `key:value`.
pub fn classify(entry: &str) -> SecurityOpt<'_> {
    let Some((key, value)) = entry.split_once(['=', ':']) else {
        return SecurityOpt::Other;
    };
    match key {
        "seccomp" if matches!(value, "unconfined" | "builtin") => {
            SecurityOpt::SeccompKeyword(value)
        }
        "seccomp" if value.trim_start().starts_with('{') => SecurityOpt::SeccompInline(value),
        "seccomp" => SecurityOpt::SeccompFile(value),
        "apparmor" => SecurityOpt::AppArmor(value),
        _ => SecurityOpt::Other,
    }
}

/// Why a seccomp profile cannot be used.
#[derive(Debug)]
pub struct ProfileError {
    /// The path, or `given inline` for a profile given in the entry.
    pub profile: String,
    /// What is wrong.
    pub problem: ProfileProblem,
}

/// What is wrong with a seccomp profile; its words follow the profile's
/// name in [`ProfileError`]'s text.
#[derive(Debug)]
pub enum ProfileProblem {
    /// The path is relative (the worker, not the daemon, reads it).
    NotAbsolute,
    /// The file cannot be read, in the system's words.
    Unreadable(std::io::Error),
    /// The file is larger than [`MAX_PROFILE_BYTES`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// The text is JSON but not an object.
    NotAnObject,
    /// The text is not JSON, in the parser's words.
    NotJson(serde_json::Error),
}

impl fmt::Display for ProfileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => {
                f.write_str("the path is not absolute (the worker reads it; write the full path)")
            }
            Self::Unreadable(e) => write!(f, "{e}"),
            Self::TooLarge { bytes } => write!(
                f,
                "{bytes} bytes is larger than the {MAX_PROFILE_BYTES} bytes accepted"
            ),
            Self::NotAnObject => {
                f.write_str("is not a JSON object (a seccomp profile has \"defaultAction\")")
            }
            Self::NotJson(e) => write!(f, "is not valid JSON: {e}"),
        }
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seccomp profile {}: {}", self.profile, self.problem)
    }
}

impl std::error::Error for ProfileError {}

/// The `seccomp=<json>` entry to send for a profile file: read (bounded),
/// checked to be a JSON object, compacted.
pub fn load_seccomp(path: &str) -> Result<String, ProfileError> {
    let fail = |problem| ProfileError {
        profile: path.to_owned(),
        problem,
    };
    if !path.starts_with('/') {
        return Err(fail(ProfileProblem::NotAbsolute));
    }
    let meta = std::fs::metadata(path).map_err(|e| fail(ProfileProblem::Unreadable(e)))?;
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(fail(ProfileProblem::TooLarge { bytes: meta.len() }));
    }
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|e| fail(ProfileProblem::Unreadable(e)))?;
    compact(&text).map_err(fail)
}

/// The `seccomp=<json>` entry for an inline profile, checked the same way.
pub fn inline_seccomp(json: &str) -> Result<String, ProfileError> {
    compact(json).map_err(|problem| ProfileError {
        profile: "given inline".into(),
        problem,
    })
}

fn compact(text: &str) -> Result<String, ProfileProblem> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(format!("seccomp={v}")),
        Ok(_) => Err(ProfileProblem::NotAnObject),
        Err(e) => Err(ProfileProblem::NotJson(e)),
    }
}

/// Profile names in the kernel's list (`name (mode)` per line).
pub fn loaded_apparmor_profiles(list: &str) -> Vec<&str> {
    list.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let name = match line.rfind(" (") {
                Some(i) if line.ends_with(')') => &line[..i],
                _ => line,
            };
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_classified_as_docker_reads_them() {
        assert_eq!(
            classify("seccomp=/etc/oz/tight.json"),
            SecurityOpt::SeccompFile("/etc/oz/tight.json")
        );
        assert_eq!(
            classify("seccomp:/etc/oz/tight.json"),
            SecurityOpt::SeccompFile("/etc/oz/tight.json")
        );
        assert_eq!(
            classify("seccomp=unconfined"),
            SecurityOpt::SeccompKeyword("unconfined")
        );
        assert_eq!(
            classify(r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#),
            SecurityOpt::SeccompInline(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)
        );
        assert_eq!(
            classify("apparmor=oz-task"),
            SecurityOpt::AppArmor("oz-task")
        );
        assert_eq!(classify("no-new-privileges"), SecurityOpt::Other);
        assert_eq!(classify("no-new-privileges:true"), SecurityOpt::Other);
        assert_eq!(classify("label=type:svirt_apache_t"), SecurityOpt::Other);
    }

    #[test]
    fn a_profile_file_is_sent_as_compact_json() {
        let dir = std::env::temp_dir().join(format!("oz-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": []\n}\n",
        )
        .unwrap();
        let list = dir.join("list.json");
        std::fs::write(&list, "[1]").unwrap();
        let broken = dir.join("broken.json");
        std::fs::write(&broken, "{\"defaultAction\":").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let results = (
            load_seccomp(&path(&good)),
            load_seccomp(&path(&list)).unwrap_err().to_string(),
            load_seccomp(&path(&broken)).unwrap_err().to_string(),
            load_seccomp(&path(&dir.join("missing.json")))
                .unwrap_err()
                .to_string(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            results.0.unwrap(),
            r#"seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#
        );
        assert_eq!(
            results.1,
            format!(
                "seccomp profile {}: is not a JSON object (a seccomp profile has \"defaultAction\")",
                path(&list)
            )
        );
        assert!(
            results.2.starts_with(&format!(
                "seccomp profile {}: is not valid JSON: EOF while parsing",
                path(&broken)
            )),
            "{}",
            results.2
        );
        assert_eq!(
            results.3,
            format!(
                "seccomp profile {}: No such file or directory (os error 2)",
                path(&dir.join("missing.json"))
            )
        );
        assert_eq!(
            load_seccomp("tight.json").unwrap_err().to_string(),
            "seccomp profile tight.json: the path is not absolute (the worker reads it; write the full path)"
        );
        assert_eq!(
            inline_seccomp(r#" {"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap(),
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#
        );
    }

    #[test]
    fn apparmor_list_names() {
        let list = "docker-default (enforce)\noz task (complain)\n/usr/bin/man (enforce)\n\n";
        assert_eq!(
            loaded_apparmor_profiles(list),
            ["docker-default", "oz task", "/usr/bin/man"]
        );
    }
}
