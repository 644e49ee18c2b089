//! The built binary's command line: help, version, and refusals, checked on
//! stdout, stderr and the exit code.

use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args(args)
        .env_remove("WARP_API_KEY")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Go worker's exit codes: kong's for a command line it cannot parse,
/// `log.Fatalf`'s for a configuration that cannot run.
const USAGE: i32 = 80;
const CONFIG: i32 = 1;

/// Asserts a refusal: exit `code`, nothing on stdout, `message` on stderr.
fn assert_refused(args: &[&str], code: i32, message: &str) {
    let out = worker(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {stderr}");
    assert_eq!(text(&out.stdout), "", "{args:?}");
    assert_eq!(stderr, format!("oz-agent-worker: {message}\n"), "{args:?}");
}

#[test]
fn help_lists_the_flags_and_exits_zero() {
    let out = worker(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), "");
    let help = text(&out.stdout);
    for flag in [
        "--worker-id",
        "--api-key",
        "--config-file",
        "--volumes",
        "--env",
        "--max-concurrent-tasks",
        "--idle-on-complete",
        "--task-timeout",
        "doctor",
        "WARP_API_KEY",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    assert_eq!(text(&worker(&["-h"]).stdout), help);
}

/// `git ARGS` in this checkout, trimmed.
fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn version_prints_the_revision_date_and_target_of_the_build() {
    let out = worker(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let line = text(&out.stdout);
    // The build ran in this checkout without overrides: the revision and
    // date are the checked-out commit's (the date is the commit's, so a
    // rebuild of one commit is identical).
    let revision = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = git(&[
        "log",
        "-1",
        "--format=%cd",
        "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
    ]);
    let prefix = format!(
        "oz-agent-worker {} (revision {revision}, built {date}, ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(line.starts_with(&prefix), "{line:?} vs {prefix:?}");
    let target = line[prefix.len()..].trim_end_matches(")\n");
    assert!(
        target.starts_with(std::env::consts::ARCH) && target.contains("-linux-"),
        "{line:?}"
    );
}

#[test]
fn unknown_flag_is_refused() {
    assert_refused(
        &["--worker-id", "w", "--bogus"],
        USAGE,
        "unknown flag `--bogus` (see `oz-agent-worker --help`)",
    );
    assert_refused(
        &["--worker-id", "w", "--max-concurent-tasks", "2"],
        USAGE,
        "unknown flag `--max-concurent-tasks`, did you mean --max-concurrent-tasks? (see `oz-agent-worker --help`)",
    );
}

#[test]
fn missing_worker_id_is_refused() {
    assert_refused(
        &["--api-key", "k"],
        CONFIG,
        "worker-id is required (via --worker-id flag or config file)",
    );
}

#[test]
fn reserved_worker_id_is_refused() {
    assert_refused(
        &["--api-key", "k", "--worker-id", "warpy"],
        CONFIG,
        "invalid worker-id: values starting with 'warp' are reserved and cannot be used",
    );
}

#[test]
fn missing_api_key_is_refused_without_the_env_var() {
    assert_refused(
        &["--worker-id", "w"],
        USAGE,
        "an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable",
    );
}

#[test]
fn unknown_config_key_is_refused_with_its_line() {
    let path = std::env::temp_dir().join(format!("oz-cli-test-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "worker_id: w\nbackend:\n  docker:\n    volumez: []\n",
    )
    .unwrap();
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&path);
    let out = worker(&["--api-key", "k", "--config-file", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(CONFIG), "{stderr}");
    assert!(stderr.contains("unknown field `volumez`"), "{stderr}");
    assert!(stderr.contains("at line 4 column 5"), "{stderr}");
}

#[test]
fn help_documents_the_exit_codes_and_comma_lists() {
    let help = text(&worker(&["--help"]).stdout);
    assert!(
        help.contains("80 for a command line that cannot be"),
        "{help}"
    );
    assert!(
        help.contains("1 for a\nconfiguration that cannot run"),
        "{help}"
    );
    assert!(help.contains("-e A=1,B=2 is two variables"), "{help}");
    assert!(help.contains("\\, for a comma inside one entry"), "{help}");
}

#[test]
fn command_line_errors_exit_80() {
    let base = ["--api-key", "k", "--worker-id", "w"];
    for (extra, message) in [
        (
            &["--log-level", "trace"][..],
            "invalid --log-level flag: `trace` is not one of debug, info, warn, error",
        ),
        (
            &["--max-concurrent-tasks", "four"],
            "invalid --max-concurrent-tasks flag: `four` is not a whole number of tasks (0 or more; 0 = unlimited)",
        ),
        (&["--env"], "flag `--env` needs a value"),
        (
            &["stray"],
            "unexpected argument `stray` (the only subcommand is `doctor`; see `oz-agent-worker --help`)",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        assert_refused(&args, USAGE, message);
    }
}

#[test]
fn configuration_errors_exit_1() {
    let base = ["--api-key", "k", "--worker-id", "w"];
    for (extra, message) in [
        (
            &["--target-dir", "/srv/work"][..],
            "flag `--target-dir` belongs to the Go worker's direct backend, but this build runs the Docker backend only",
        ),
        (
            &["-v", "/srv/a:/a:ro,z"],
            "invalid --volumes flag: volume `z` has container path `z`, which is not absolute (the value was split at commas, as the Go worker splits it; write \\, for a comma inside one entry)",
        ),
        (
            &["-v", "/srv/a:/a:rx"],
            "invalid --volumes flag: volume `/srv/a:/a:rx` has unknown option `rx` (Docker's are ro, rw, z, Z, private, rprivate, shared, rshared, slave, rslave, nocopy, consistent, cached, delegated)",
        ),
        (
            &["-e", "A=1,,B=2"],
            "invalid --env flag: empty value (expected KEY=VALUE or KEY) (the value was split at commas, as the Go worker splits it; write \\, for a comma inside one entry)",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        assert_refused(&args, CONFIG, message);
    }
}
