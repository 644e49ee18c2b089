//! `oz-agent-worker doctor`: checks a host before its first task and says,
//! one line per check, what passes, what is doubtful and what will fail,
//! with what to do about each failure.
//!
//! Owns the runner ([`run`]), the check result type ([`Check`]) and how a
//! report is rendered (text lines as each check ends, or one JSON document
//! with `--format json`). The checks themselves live in [`config_checks`],
//! [`docker_checks`], [`daemon_side`] and [`network`]; [`clock`] rates the
//! clock's drift (the dates are read by [`crate::calendar`]). The doctor
//! reads the configuration, talks to the Docker daemon (read-only: `_ping`,
//! `version`, `info`, image and network inspect), asks each mirror registry
//! for `/v2/` and dials the orchestrator once; it must never print the API key, registry secrets or
//! environment values, and must never change anything on the host.

pub mod clock;
pub mod config_checks;
pub mod daemon_side;
pub mod docker_checks;
pub mod network;

use std::fmt;
use std::io::Write;

use serde_json::json;

pub use crate::config::{DoctorFormat, DoctorInput};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but may surprise (anonymous pulls, image not yet on the host).
    Warn,
    /// The worker will fail here.
    Fail,
}

impl Status {
    /// The lower-case word used in JSON output.
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One check's outcome. `detail` and `fix` are shown to the operator and
/// must hold no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// How it came out.
    pub status: Status,
    /// What was checked, e.g. `docker reachable`.
    pub name: String,
    /// What was found.
    pub detail: String,
    /// What to do; shown only on failure.
    pub fix: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// A failure and what to do about it.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            name: name.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// The check's lines: `STATUS name: detail`, then `  fix: …` on failure.
    pub fn render(&self) -> String {
        let mut text = format!("{} {}: {}\n", self.status, self.name, self.detail);
        if let (Status::Fail, Some(fix)) = (self.status, &self.fix) {
            text.push_str(&format!("  fix: {fix}\n"));
        }
        text
    }
}

/// Writes each check as soon as it is known (a slow network check should
/// not hide the results before it) and counts the outcomes; in JSON, keeps
/// them for one document at the end.
pub struct Reporter<'a> {
    out: &'a mut dyn Write,
    counts: [usize; 3],
    /// `Some` in JSON mode: the checks so far.
    json: Option<Vec<Check>>,
}

impl<'a> Reporter<'a> {
    /// A reporter writing text lines to `out`.
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            counts: [0; 3],
            json: None,
        }
    }

    /// A reporter writing one JSON document to `out` at [`Reporter::summary`].
    pub fn json(out: &'a mut dyn Write) -> Self {
        Self {
            json: Some(Vec::new()),
            ..Self::new(out)
        }
    }

    /// Records and prints one check.
    pub fn add(&mut self, check: Check) {
        self.counts[check.status as usize] += 1;
        if let Some(checks) = &mut self.json {
            checks.push(check);
            return;
        }
        // A closed stdout must not stop the checks: the exit code still tells.
        let _ = self.out.write_all(check.render().as_bytes());
        let _ = self.out.flush();
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.counts[Status::Fail as usize] > 0
    }

    /// Prints the closing summary line (text), or the whole document (JSON):
    /// `{"ok", "passed", "warnings", "failed", "checks": [{"status", "name",
    /// "detail", "fix"}]}`, `fix` null unless the check failed.
    pub fn summary(&mut self) {
        let [pass, warn, fail] = self.counts;
        match &self.json {
            None => {
                let _ = writeln!(
                    self.out,
                    "doctor: {pass} passed, {warn} warning(s), {fail} failed"
                );
            }
            Some(checks) => {
                let checks: Vec<_> = checks
                    .iter()
                    .map(|c| {
                        json!({
                            "status": c.status.word(),
                            "name": c.name,
                            "detail": c.detail,
                            "fix": c.fix.as_ref().filter(|_| c.status == Status::Fail),
                        })
                    })
                    .collect();
                let doc = json!({
                    "ok": fail == 0,
                    "passed": pass,
                    "warnings": warn,
                    "failed": fail,
                    "checks": checks,
                });
                let _ = writeln!(self.out, "{doc}");
            }
        }
        let _ = self.out.flush();
    }
}

/// Runs every check, printing the report to `out`. Returns the exit code:
/// 0 when nothing failed (warnings allowed), 1 otherwise.
pub fn run(input: DoctorInput, out: &mut dyn Write) -> i32 {
    let mut report = match input.format {
        DoctorFormat::Text => Reporter::new(out),
        DoctorFormat::Json => Reporter::json(out),
    };
    config_checks::run(&input, &mut report);
    let docker = docker_checks::run(&input, &mut report);
    docker_checks::images(&input, docker.as_ref(), &mut report);
    daemon_side::run(&input, docker.as_ref(), &mut report);
    config_checks::volumes(&input, &mut report);
    network::run(&input, &mut report);
    report.summary();
    i32::from(report.failed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_renders_with_its_fix_and_others_without() {
        let fail = Check::fail("api key", "missing", "pass --api-key");
        assert_eq!(
            fail.render(),
            "FAIL api key: missing\n  fix: pass --api-key\n"
        );
        let pass = Check::pass("worker id", "`w1`");
        assert_eq!(pass.render(), "PASS worker id: `w1`\n");
        let warn = Check {
            fix: Some("not shown".into()),
            ..Check::warn("clock", "not checked")
        };
        assert_eq!(warn.render(), "WARN clock: not checked\n");
    }

    #[test]
    fn reporter_counts_and_summarises() {
        let mut buf = Vec::new();
        let mut r = Reporter::new(&mut buf);
        r.add(Check::pass("a", "ok"));
        r.add(Check::warn("b", "hm"));
        assert!(!r.failed());
        r.add(Check::fail("c", "bad", "fix it"));
        assert!(r.failed());
        r.summary();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "PASS a: ok\nWARN b: hm\nFAIL c: bad\n  fix: fix it\ndoctor: 1 passed, 1 warning(s), 1 failed\n"
        );
    }

    #[test]
    fn json_is_one_document_with_every_check() {
        let mut buf = Vec::new();
        let mut r = Reporter::json(&mut buf);
        r.add(Check::pass("a", "ok \"quoted\""));
        r.add(Check {
            fix: Some("not shown".into()),
            ..Check::warn("b", "hm")
        });
        r.add(Check::fail("c", "bad", "fix it"));
        r.summary();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({
                "ok": false, "passed": 1, "warnings": 1, "failed": 1,
                "checks": [
                    {"status": "pass", "name": "a", "detail": "ok \"quoted\"", "fix": null},
                    {"status": "warn", "name": "b", "detail": "hm", "fix": null},
                    {"status": "fail", "name": "c", "detail": "bad", "fix": "fix it"},
                ]
            })
        );
    }
}
