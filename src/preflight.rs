//! The daemon's side of the configuration, checked before the first task:
//! the `runtime` is one the daemon has, the `network` exists, seccomp
//! profile files are there (and are sent as the JSON the Engine API wants),
//! AppArmor profiles are loaded, the proxy variable for the WebSocket is
//! usable, and each mirror registry answers `GET /v2/`.
//!
//! Owns the verdicts ([`Finding`], [`Problem`]) that `doctor` prints and
//! [`at_start`] acts on: a [`Problem`] would fail every task (or every
//! dial), so the worker refuses to start with its one line; a doubt is a
//! warning. Read-only towards the daemon (`GET /info`, `GET /networks/..`);
//! never changes the host, never logs a secret (proxy values may hold
//! credentials: only the variable's name is shown).

pub mod profiles;
pub mod registry;

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use log::warn;

use crate::config::{Config, Hardening};
use crate::connection::WsUrl;
use crate::docker::system::{RegistryConfig, SystemInfo};
use crate::docker::{Docker, DockerError};
use crate::net::{ProxySettings, RootSource, UnusableProxy, client_config, load_roots};
use profiles::{ProfileError, SecurityOpt};
use registry::{Answer, Silence};

/// Something the daemon or host lacks that would fail every task.
#[derive(Debug)]
pub enum Problem {
    /// `runtime` names a runtime the daemon does not have.
    Runtime {
        /// The runtime configured.
        name: String,
        /// The daemon's runtimes.
        available: Vec<String>,
    },
    /// `network` names a network the daemon does not have.
    Network {
        /// The network configured.
        name: String,
    },
    /// A `seccomp=` profile cannot be read or is not a profile.
    Profile(ProfileError),
    /// An `apparmor=` profile is not loaded on the daemon's host.
    AppArmor {
        /// The profile name.
        name: String,
    },
    /// The proxy variable for the WebSocket cannot be used.
    Proxy {
        /// The orchestrator URL (never holds a secret).
        url: String,
        /// The variable and what is wrong with it.
        proxy: UnusableProxy,
    },
    /// Asking the daemon failed.
    Daemon {
        /// What was asked, e.g. `GET /info`.
        call: &'static str,
        /// Why.
        source: DockerError,
    },
}

impl Problem {
    /// What is wrong, without the fix.
    pub fn detail(&self) -> String {
        match self {
            Self::Runtime { name, available } => format!(
                "backend.docker.runtime {name:?} is not a runtime of this Docker daemon (it has: {})",
                available.join(", ")
            ),
            Self::Network { name } => {
                format!("backend.docker.network {name:?} does not exist on this Docker daemon")
            }
            Self::Profile(e) => format!("backend.docker.security_opt: {e}"),
            Self::AppArmor { name } => format!(
                "backend.docker.security_opt: AppArmor profile {name:?} is not loaded on the Docker host"
            ),
            Self::Proxy { url, proxy } => format!("cannot use the proxy for {url}: {proxy}"),
            Self::Daemon { call, source } => format!("checking the daemon ({call}): {source}"),
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> String {
        match self {
            Self::Runtime { name, .. } => format!(
                "install {name} and register it under \"runtimes\" in the daemon's daemon.json (then restart dockerd), or remove backend.docker.runtime"
            ),
            Self::Network { name } => format!(
                "create it (docker network create {name}) or correct backend.docker.network"
            ),
            Self::Profile(_) => {
                "give the absolute path of a readable seccomp profile (JSON) on the worker's host"
                    .into()
            }
            Self::AppArmor { name } => format!(
                "load it on the Docker host (apparmor_parser -r /etc/apparmor.d/{name}) or correct the entry"
            ),
            Self::Proxy { .. } => {
                "only http:// CONNECT proxies are supported; list hosts reached directly in NO_PROXY"
                    .into()
            }
            Self::Daemon { .. } => "check the daemon's health (`docker info`)".into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.detail(), self.fix())
    }
}

impl std::error::Error for Problem {}

/// How one check came out.
#[derive(Debug)]
pub enum Outcome {
    /// Fine, with what was found.
    Fine(String),
    /// Works, but may not do what the operator expects.
    Doubt(String),
    /// Every task would fail.
    Fatal(Problem),
}

/// One check: what was checked and how it came out.
#[derive(Debug)]
pub struct Finding {
    /// e.g. `runtime`, `security_opt seccomp=/etc/oz/tight.json`.
    pub name: String,
    /// The verdict.
    pub outcome: Outcome,
}

/// The runtime, network and `security_opt` checks, and the `security_opt`
/// list to send (seccomp files replaced by their JSON). `apparmor_list`
/// reads the kernel's loaded-profile list.
pub fn hardening(
    docker: &Docker,
    h: &Hardening,
    info: &SystemInfo,
    apparmor_list: &dyn Fn() -> io::Result<String>,
) -> (Vec<Finding>, Vec<String>) {
    let mut found = Vec::new();
    if let Some(name) = h.runtime.as_deref().filter(|r| !r.is_empty()) {
        found.push(Finding {
            name: "runtime".into(),
            outcome: runtime(info, name),
        });
    }
    if let Some(name) = h.network.as_deref().filter(|n| !n.is_empty()) {
        found.push(Finding {
            name: "network".into(),
            outcome: network(docker, name),
        });
    }
    let mut send = Vec::with_capacity(h.security_opt.len());
    for entry in &h.security_opt {
        let (outcome, value) = security_opt(entry, info, apparmor_list);
        send.push(value.unwrap_or_else(|| entry.clone()));
        found.push(Finding {
            name: format!("security_opt {}", shorten(entry)),
            outcome,
        });
    }
    (found, send)
}

/// Entries are shown as written, except inline profiles, which can be long.
fn shorten(entry: &str) -> String {
    match profiles::classify(entry) {
        SecurityOpt::SeccompInline(_) => "seccomp={...}".into(),
        _ => entry.into(),
    }
}

/// Whether the daemon has runtime `name`.
pub fn runtime(info: &SystemInfo, name: &str) -> Outcome {
    let available = info.runtimes();
    if available.contains(&name) {
        return Outcome::Fine(format!("{name} is registered with the daemon"));
    }
    Outcome::Fatal(Problem::Runtime {
        name: name.into(),
        available: available.into_iter().map(str::to_owned).collect(),
    })
}

/// Whether the daemon has network `name` (`default` and `container:<id>`
/// are network modes, not networks).
pub fn network(docker: &Docker, name: &str) -> Outcome {
    if name == "default" {
        return Outcome::Fine("the daemon's default network".into());
    }
    if let Some(container) = name.strip_prefix("container:") {
        return Outcome::Doubt(format!(
            "shares the network of container {container}, which must be running when each task starts; not checked"
        ));
    }
    match docker.network_inspect(name) {
        Ok(Some(n)) => Outcome::Fine(format!("{} exists (driver {})", n.name, n.driver)),
        Ok(None) => Outcome::Fatal(Problem::Network { name: name.into() }),
        Err(source) => Outcome::Fatal(Problem::Daemon {
            call: "GET /networks",
            source,
        }),
    }
}

/// One `security_opt` entry, and the value to send when it differs.
fn security_opt(
    entry: &str,
    info: &SystemInfo,
    apparmor_list: &dyn Fn() -> io::Result<String>,
) -> (Outcome, Option<String>) {
    match profiles::classify(entry) {
        SecurityOpt::SeccompFile(path) => match profiles::load_seccomp(path) {
            Ok(json) => (
                Outcome::Fine(format!(
                    "profile read ({} bytes of JSON sent with each task)",
                    json.len() - "seccomp=".len()
                )),
                Some(json),
            ),
            Err(e) => (Outcome::Fatal(Problem::Profile(e)), None),
        },
        SecurityOpt::SeccompInline(json) => match profiles::inline_seccomp(json) {
            Ok(json) => (Outcome::Fine("inline profile is JSON".into()), Some(json)),
            Err(e) => (Outcome::Fatal(Problem::Profile(e)), None),
        },
        SecurityOpt::AppArmor("unconfined") => (Outcome::Fine("no AppArmor profile".into()), None),
        SecurityOpt::AppArmor(name) if !info.has_security_option("apparmor") => (
            Outcome::Doubt(format!(
                "the daemon does not enforce AppArmor (its security options: {}); profile {name:?} has no effect",
                info.security_options.join(" ")
            )),
            None,
        ),
        SecurityOpt::AppArmor(name) => (apparmor(name, apparmor_list), None),
        SecurityOpt::SeccompKeyword(_) | SecurityOpt::Other => (
            Outcome::Fine("passed to the daemon as written".into()),
            None,
        ),
    }
}

fn apparmor(name: &str, list: &dyn Fn() -> io::Result<String>) -> Outcome {
    match list() {
        Ok(text) if profiles::loaded_apparmor_profiles(&text).contains(&name) => {
            Outcome::Fine(format!("profile {name} is loaded"))
        }
        Ok(_) => Outcome::Fatal(Problem::AppArmor { name: name.into() }),
        Err(e) => Outcome::Doubt(format!(
            "cannot list loaded AppArmor profiles ({}: {e}); not checked (a worker in a container cannot see the host's list)",
            profiles::APPARMOR_PROFILES
        )),
    }
}

/// The proxy the WebSocket dial would use, refused when unusable.
pub fn proxy(websocket_url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), Problem> {
    // A bad URL is the connection's own start-up error; nothing to add here.
    let Ok(url) = WsUrl::parse(websocket_url) else {
        return Ok(());
    };
    match ProxySettings::from_env(env).unusable_for(&url.peer()) {
        Some(proxy) => Err(Problem::Proxy {
            url: url.to_string(),
            proxy,
        }),
        None => Ok(()),
    }
}

/// The registries the mirror replacements point at, each once. A
/// replacement is a prefix: its first component is a registry when it has a
/// `.` or `:` or is `localhost` (Docker's rule); otherwise it is a Docker Hub
/// path, not a private mirror, and is left out.
pub fn mirror_registries(config: &Config) -> Vec<String> {
    let set: BTreeSet<String> = config
        .docker
        .registry_mirrors
        .values()
        .filter_map(|to| {
            let first = to.split('/').next()?;
            (first.contains(['.', ':']) || first == "localhost").then(|| first.to_owned())
        })
        .filter(|r| r != "docker.io" && r != "index.docker.io")
        .collect();
    set.into_iter().collect()
}

/// Probes each mirror registry with the worker's trust roots.
pub fn probe_mirrors(
    registries: &[String],
    insecure: &RegistryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, Result<Answer, Silence>)> {
    let (roots, _, _) = load_roots(&RootSource::from_env(env));
    let Ok(tls) = client_config(roots) else {
        return Vec::new();
    };
    registries
        .iter()
        .map(|r| (r.clone(), registry::probe(r, &tls, insecure)))
        .collect()
}

/// What the worker checks at start, after Docker answered: refuses with the
/// first [`Problem`], warns about doubts, and returns the configuration to
/// run with (seccomp profile files replaced by their JSON). Mirror probes
/// run on a thread of their own and only warn: a registry that is down for
/// a minute must not keep the worker from starting.
pub fn at_start(
    docker: &Docker,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Problem> {
    proxy(&config.websocket_url, env)?;
    let h = &config.docker.hardening;
    let mirrors = mirror_registries(config);
    let asks_daemon = h.runtime.is_some() || !h.security_opt.is_empty() || !mirrors.is_empty();
    let info = match asks_daemon {
        true => docker.info().map_err(|source| Problem::Daemon {
            call: "GET /info",
            source,
        })?,
        false => SystemInfo::default(),
    };
    let read_list = || std::fs::read_to_string(profiles::APPARMOR_PROFILES);
    let (findings, security_opt) = hardening(docker, h, &info, &read_list);
    for finding in findings {
        match finding.outcome {
            Outcome::Fine(_) => {}
            Outcome::Doubt(d) => warn!("{}: {d}", finding.name),
            Outcome::Fatal(p) => return Err(p),
        }
    }
    if !mirrors.is_empty() {
        let insecure = info.registry_config.clone();
        let vars: Vec<(String, String)> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .filter_map(|k| env(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        let _ = std::thread::Builder::new()
            .name("mirror-probe".into())
            .spawn(move || {
                let env = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                for (registry, answer) in probe_mirrors(&mirrors, &insecure, &env) {
                    match answer {
                        Ok(Answer::Registry { .. }) => {}
                        Ok(Answer::Untrusted { detail }) => warn!(
                            "mirror registry {registry}: its certificate is not trusted here ({detail}); pulls work only if the daemon trusts it"
                        ),
                        Err(silence) => warn!(
                            "mirror registry {registry} {silence}; pulls through it will fail until it answers"
                        ),
                    }
                }
            });
    }
    let mut config = config.clone();
    config.docker.hardening.security_opt = security_opt;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> SystemInfo {
        serde_json::from_str(json).unwrap()
    }

    fn fatal(o: Outcome) -> String {
        match o {
            Outcome::Fatal(p) => p.to_string(),
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    #[test]
    fn a_runtime_the_daemon_lacks_is_fatal_and_lists_what_it_has() {
        let i = info(r#"{"Runtimes":{"runc":{},"io.containerd.runc.v2":{}}}"#);
        assert!(matches!(runtime(&i, "runc"), Outcome::Fine(_)));
        assert_eq!(
            fatal(runtime(&i, "runsc")),
            "backend.docker.runtime \"runsc\" is not a runtime of this Docker daemon (it has: io.containerd.runc.v2, runc); install runsc and register it under \"runtimes\" in the daemon's daemon.json (then restart dockerd), or remove backend.docker.runtime"
        );
    }

    #[test]
    fn security_opt_entries() {
        let no_apparmor = info(r#"{"SecurityOptions":["name=seccomp,profile=default"]}"#);
        let with_apparmor = info(r#"{"SecurityOptions":["name=apparmor"]}"#);
        let list = || Ok("docker-default (enforce)\noz-task (enforce)\n".to_owned());
        let unreadable = || Err(io::Error::from(io::ErrorKind::PermissionDenied));

        let (o, send) = security_opt("seccomp=/nonexistent/oz.json", &no_apparmor, &list);
        assert_eq!(
            fatal(o),
            "backend.docker.security_opt: seccomp profile /nonexistent/oz.json: No such file or directory (os error 2); give the absolute path of a readable seccomp profile (JSON) on the worker's host"
        );
        assert_eq!(send, None);

        let (o, send) = security_opt("no-new-privileges", &no_apparmor, &list);
        assert!(matches!(o, Outcome::Fine(_)));
        assert_eq!(send, None);

        match security_opt("apparmor=oz-task", &no_apparmor, &list).0 {
            Outcome::Doubt(d) => assert_eq!(
                d,
                "the daemon does not enforce AppArmor (its security options: name=seccomp,profile=default); profile \"oz-task\" has no effect"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            security_opt("apparmor=oz-task", &with_apparmor, &list).0,
            Outcome::Fine(_)
        ));
        assert_eq!(
            fatal(security_opt("apparmor=oz-other", &with_apparmor, &list).0),
            "backend.docker.security_opt: AppArmor profile \"oz-other\" is not loaded on the Docker host; load it on the Docker host (apparmor_parser -r /etc/apparmor.d/oz-other) or correct the entry"
        );
        assert!(matches!(
            security_opt("apparmor=oz-other", &with_apparmor, &unreadable).0,
            Outcome::Doubt(_)
        ));
    }

    #[test]
    fn an_unusable_proxy_is_refused_naming_the_variable() {
        let env = |k: &str| (k == "HTTPS_PROXY").then(|| "socks5://u:secret@p:1080".to_owned());
        let e = proxy("wss://oz.warp.dev/api/v1/selfhosted/worker/ws", &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot use the proxy for wss://oz.warp.dev/api/v1/selfhosted/worker/ws: HTTPS_PROXY: proxy scheme \"socks5\" is not supported (the worker tunnels through an http:// proxy with CONNECT); set it to http://host:port or unset it; only http:// CONNECT proxies are supported; list hosts reached directly in NO_PROXY"
        );
        assert!(!e.contains("secret"));
        assert!(proxy("ws://127.0.0.1:9/ws", &env).is_ok());
    }

    #[test]
    fn mirror_registries_are_the_private_hosts_once() {
        let mut config = crate::config::from_yaml(
            "worker_id: w\nbackend:\n  docker:\n    registry_mirrors:\n      docker.io: mirror.lan:5000/hub\n      ghcr.io: mirror.lan:5000/ghcr\n      quay.io: 127.0.0.1:5001\n      docker.io/warpdotdev: myorg/agents\n",
            "c.yaml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            mirror_registries(&config),
            ["127.0.0.1:5001", "mirror.lan:5000"]
        );
        config.docker.registry_mirrors.clear();
        assert!(mirror_registries(&config).is_empty());
    }
}
