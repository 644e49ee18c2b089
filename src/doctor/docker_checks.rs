//! Docker checks: which daemon (and why), whether it answers, its API
//! version and platform, and for each image the worker will pull: the
//! reference after `registry_mirrors`, the registry credentials that would
//! be sent, and whether the image is already on the host.
//!
//! Read-only towards the daemon (`_ping`, `version`, image inspect); it
//! never pulls. Credentials are looked up but only their source and user
//! name are shown, never a password or token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Check, DoctorInput, Reporter};
use crate::config::{DoctorEnv, PullPolicy};
use crate::docker::auth::{self, CredentialEnv, RegistryAuth};
use crate::docker::discovery::{self, Source};
use crate::docker::reference::ImageRef;
use crate::docker::{Docker, DockerError, api};

/// Longest a credential helper may run under the doctor.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// Endpoint, reachability, API version and platform. Returns the daemon
/// when it can be used for the image checks.
pub fn run(input: &DoctorInput, report: &mut Reporter<'_>) -> Option<Docker> {
    let env = |name: &str| input.env.get(name);
    let target = match discovery::discover(&env, Path::new("/")) {
        Ok(t) => t,
        Err(e) => {
            report.add(Check::fail(
                "docker endpoint",
                e.to_string(),
                "set DOCKER_HOST to unix:///path/to/docker.sock or tcp://host:port, or fix the docker context",
            ));
            return None;
        }
    };
    let from = match &target.source {
        Source::DockerHost => "from DOCKER_HOST".to_owned(),
        Source::Context(name) => format!("from docker context `{name}`"),
        Source::Default => "the default socket".to_owned(),
    };
    report.add(Check::pass(
        "docker endpoint",
        format!("{} ({from})", target.endpoint),
    ));
    let docker = match Docker::connect(&target) {
        Ok(d) => d,
        Err(e @ DockerError::ApiTooOld { .. }) => {
            report.add(Check::pass("docker reachable", "the daemon answers"));
            report.add(Check::fail(
                "docker api",
                e.to_string(),
                "upgrade Docker Engine to 20.10 or newer (and unset DOCKER_API_VERSION if it pins an older API)",
            ));
            return None;
        }
        Err(e) => {
            let fix = unreachable_fix(&e);
            report.add(Check::fail("docker reachable", e.to_string(), fix));
            return None;
        }
    };
    report.add(Check::pass("docker reachable", "the daemon answers /_ping"));
    let info = match docker.version() {
        Ok(info) => info,
        Err(e) => {
            report.add(Check::fail(
                "docker api",
                e.to_string(),
                "check the daemon's health (`docker version`)",
            ));
            return None;
        }
    };
    report.add(Check::pass(
        "docker api",
        format!(
            "using API {} (Engine {}, API up to {}; 1.41 or newer needed)",
            docker.api_version(),
            info.version,
            info.api_version
        ),
    ));
    match api::check_platform(&info) {
        Ok(platform) => report.add(Check::pass("docker platform", platform)),
        Err(e) => {
            report.add(Check::fail(
                "docker platform",
                e.to_string(),
                "run the worker against a linux/amd64 or linux/arm64 Docker daemon",
            ));
            return None;
        }
    }
    if let Some(check) = data_root(&docker) {
        report.add(check);
    }
    Some(docker)
}

/// The data root's free space, when this process can see it (a local
/// daemon whose data root is a path here too).
fn data_root(docker: &Docker) -> Option<Check> {
    let root = docker.info().ok()?.docker_root_dir;
    let space = crate::execute::disk::data_root_space(docker, &root)?;
    let gb = |b: u64| b as f64 / 1e9;
    let detail = format!(
        "{root}: {:.1} GB free of {:.1} GB",
        gb(space.free),
        gb(space.total)
    );
    Some(if space.is_enough() {
        Check::pass("docker disk", detail)
    } else {
        Check::warn(
            "docker disk",
            format!(
                "{detail}: pulls and creates will fail for lack of space; free some (docker system df shows what uses it)"
            ),
        )
    })
}

fn unreachable_fix(e: &DockerError) -> String {
    match e {
        DockerError::NoDaemon { .. } => "start the Docker daemon, or point DOCKER_HOST at its socket (in a container: -v /var/run/docker.sock:/var/run/docker.sock)".to_owned(),
        DockerError::PermissionDenied { gid: Some(gid), .. } => format!(
            "add this user to the socket's group (gid {gid}), or run the worker container with --group-add {gid} (or --user root)"
        ),
        DockerError::PermissionDenied { gid: None, .. } => "add this user to the socket's group, or run the worker container with --user/--group-add".to_owned(),
        _ => "check DOCKER_HOST / the docker context, the daemon's address and its TLS files".to_owned(),
    }
}

/// The default image and the configured sidecar image: reference, registry
/// credentials and presence on the host.
pub fn images(input: &DoctorInput, docker: Option<&Docker>, report: &mut Reporter<'_>) {
    let d = &input.config.docker;
    let mut list = vec![("default image", d.default_image.as_str())];
    if let Some(sidecar) = &d.sidecar_image {
        list.push(("sidecar image", sidecar.as_str()));
    }
    let creds = credential_env(&input.env);
    for (label, name) in list {
        let image = match ImageRef::parse(name).and_then(|r| r.with_mirrors(&d.registry_mirrors)) {
            Ok(image) => image,
            Err(e) => {
                report.add(Check::fail(
                    label,
                    format!("`{name}`: {e}"),
                    "correct the image reference or the registry_mirrors entry",
                ));
                continue;
            }
        };
        let full = image.to_string();
        report.add(Check::pass(label, format!("`{name}` pulls as {full}")));
        report.add(credentials(label, &image, &creds));
        report.add(match docker {
            Some(docker) => on_host(label, &full, docker, d.image_pull_policy),
            None => Check::warn(
                format!("{label} on host"),
                "not checked: the Docker daemon cannot be used",
            ),
        });
    }
}

fn credential_env(env: &DoctorEnv) -> CredentialEnv {
    let set = |name: &str| env.get(name).filter(|v| !v.is_empty());
    CredentialEnv {
        docker_config: set("DOCKER_CONFIG").map(PathBuf::from),
        home: set("HOME").map(PathBuf::from),
        auth_config: set("DOCKER_AUTH_CONFIG"),
        path: set("PATH").map(Into::into),
        helper_timeout: HELPER_TIMEOUT,
    }
}

/// Which credentials a pull of `image` would send. Looked up in the same
/// order as `auth::lookup` (inline config, then the file), one source at a
/// time so the source can be named.
fn credentials(label: &str, image: &ImageRef, env: &CredentialEnv) -> Check {
    let name = format!("{label} credentials");
    let key = image.credential_key();
    let registry = image.registry();
    let inline_only = CredentialEnv {
        docker_config: None,
        home: None,
        ..env.clone()
    };
    let file_only = CredentialEnv {
        auth_config: None,
        ..env.clone()
    };
    let file = env.config_file();
    let found = auth::lookup(key, &inline_only)
        .map(|a| a.map(|a| (a, "$DOCKER_AUTH_CONFIG".to_owned())))
        .and_then(|hit| match hit {
            Some(hit) => Ok(Some(hit)),
            None => auth::lookup(key, &file_only).map(|a| a.map(|a| (a, file_source(&file, key)))),
        });
    let searched = match &file {
        Some(path) => path.display().to_string(),
        None => "no Docker config (HOME and DOCKER_CONFIG unset)".to_owned(),
    };
    match found {
        Ok(Some((auth, source))) => {
            Check::pass(name, format!("{registry}: {} from {source}", who(&auth)))
        }
        Ok(None) => Check::warn(
            name,
            format!("{registry}: none found (searched {searched}); pulls will be anonymous"),
        ),
        Err(e) => Check::warn(name, format!("{registry}: {e}; pulls will be anonymous")),
    }
}

fn who(auth: &RegistryAuth) -> String {
    match auth.username() {
        Some(user) => format!("user `{user}`"),
        None => "an identity token".to_owned(),
    }
}

/// The config file, plus the credential helper it names for `key` if any
/// (names only; the file's secrets are not read into anything kept).
fn file_source(file: &Option<PathBuf>, key: &str) -> String {
    #[derive(Deserialize)]
    struct Helpers {
        #[serde(rename = "credHelpers", default)]
        cred_helpers: std::collections::BTreeMap<String, String>,
        #[serde(rename = "credsStore", default)]
        creds_store: Option<String>,
    }
    let Some(path) = file else {
        return "the Docker config".to_owned();
    };
    let helper = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<Helpers>(&text).ok())
        .and_then(|h| h.cred_helpers.get(key).cloned().or(h.creds_store))
        .filter(|h| !h.is_empty());
    match helper {
        Some(helper) => format!("{} via docker-credential-{helper}", path.display()),
        None => path.display().to_string(),
    }
}

fn on_host(label: &str, full: &str, docker: &Docker, policy: PullPolicy) -> Check {
    let name = format!("{label} on host");
    match (docker.image_inspect(full), policy) {
        (Ok(Some(info)), _) => Check::pass(name, format!("present ({})", short_id(&info.id))),
        (Ok(None), PullPolicy::Never) => Check::fail(
            name,
            format!("{full} is not on this host and image_pull_policy is Never"),
            format!(
                "load it on this host (docker pull / docker load {full}), or set image_pull_policy to IfNotPresent"
            ),
        ),
        (Ok(None), _) => Check::warn(
            name,
            format!("{full} is not on this host yet; the first task pulls it"),
        ),
        (Err(e), _) => Check::fail(
            name,
            e.to_string(),
            "check the daemon's health (`docker image inspect`)",
        ),
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn credentials_name_the_source_and_user_only() {
        let dir = std::env::temp_dir().join(format!("oz-doctor-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // "bob:hunter2-SECRET" in base64.
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{"reg.example:5000":{"auth":"Ym9iOmh1bnRlcjItU0VDUkVU"}}}"#,
        )
        .unwrap();
        let env = CredentialEnv {
            docker_config: Some(dir.clone()),
            home: None,
            auth_config: None,
            path: None,
            helper_timeout: HELPER_TIMEOUT,
        };
        let image = ImageRef::parse("reg.example:5000/team/app:1").unwrap();
        let found = credentials("default image", &image, &env);
        let hub = credentials("default image", &ImageRef::parse("ubuntu").unwrap(), &env);
        let inline = CredentialEnv {
            auth_config: Some(
                r#"{"auths":{"reg.example:5000":{"identitytoken":"tok-SECRET"}}}"#.into(),
            ),
            ..env.clone()
        };
        let from_inline = credentials("sidecar image", &image, &inline);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.render(),
            format!(
                "PASS default image credentials: reg.example:5000: user `bob` from {}\n",
                dir.join("config.json").display()
            )
        );
        assert_eq!(
            hub.render(),
            format!(
                "WARN default image credentials: docker.io: none found (searched {}); pulls will be anonymous\n",
                dir.join("config.json").display()
            )
        );
        assert_eq!(
            from_inline.render(),
            "PASS sidecar image credentials: reg.example:5000: an identity token from $DOCKER_AUTH_CONFIG\n"
        );
    }
}
