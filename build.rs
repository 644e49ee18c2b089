//! Build metadata for `--version`, the start-up line and `oz_worker_info`:
//! the git revision, the build date and the target triple, fixed at build
//! time so a binary says what it was built from without asking anything at
//! run time.
//!
//! Overrides (release builds, or a source tree without `.git`):
//! - `OZ_BUILD_VERSION`: the version string (default: the crate version);
//! - `OZ_BUILD_REVISION`: the revision (default: `git rev-parse --short=12 HEAD`);
//! - `SOURCE_DATE_EPOCH`: the build date, seconds since 1970 (default: the
//!   commit's date, so two builds of one commit are byte-identical).
//!
//! Unknown values stay empty and the binary says "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn env(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Refuses values that would garble a label or a log line.
fn checked(name: &str, value: String) -> String {
    let ok = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if !ok {
        panic!("{name}={value:?}: use at most 64 of A-Z a-z 0-9 . _ - +");
    }
    value
}

fn main() {
    let version = match env("OZ_BUILD_VERSION") {
        Some(v) => checked("OZ_BUILD_VERSION", v),
        None => std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
    };
    let revision = match env("OZ_BUILD_REVISION") {
        Some(r) => checked("OZ_BUILD_REVISION", r),
        None => git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default(),
    };
    let epoch = match env("SOURCE_DATE_EPOCH") {
        Some(e) => match e.trim().parse::<u64>() {
            Ok(n) => n.to_string(),
            Err(_) => panic!("SOURCE_DATE_EPOCH={e:?} is not a whole number of seconds"),
        },
        None => git(&["log", "-1", "--format=%ct"]).unwrap_or_default(),
    };
    // Rebuild when HEAD moves (the files exist only in a git checkout;
    // naming a missing file would rerun this script on every build).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let head = Path::new(&dir).join("HEAD");
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
        }
        if let (Some(common), Some(reference)) = (
            git(&["rev-parse", "--git-common-dir"]),
            git(&["symbolic-ref", "-q", "HEAD"]),
        ) {
            for file in [
                Path::new(&common).join(&reference),
                Path::new(&common).join("packed-refs"),
            ] {
                if file.exists() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=OZ_BUILD_VERSION={version}");
    println!("cargo:rustc-env=OZ_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=OZ_BUILD_EPOCH={epoch}");
    println!("cargo:rustc-env=OZ_BUILD_TARGET={target}");
}
