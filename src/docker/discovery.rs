//! Finding the Docker daemon the way the docker CLI does: `DOCKER_HOST`, then
//! `DOCKER_CONTEXT` / `currentContext`, then the default and rootless sockets.
//!
//! Environment lookups and the filesystem root are injected so every rule is
//! unit-testable with a temp dir. Discovery only reads configuration; it never
//! connects (see `transport.rs`) and never reads credentials.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{ContextFrom, DockerError, Result};
use super::sha256;
use super::transport::{Endpoint, TlsFiles};

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `DOCKER_HOST`.
    DockerHost,
    /// A docker context of this name.
    Context(String),
    /// The default (or rootless) socket.
    Default,
}

/// The daemon to talk to and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where the daemon listens.
    pub endpoint: Endpoint,
    /// `DOCKER_API_VERSION`, which turns negotiation off.
    pub api_version: Option<String>,
    /// Which rule chose the endpoint.
    pub source: Source,
}

/// Discovery from this process's environment and the real filesystem.
pub fn from_process_env() -> Result<Target> {
    discover(&|name| std::env::var(name).ok(), Path::new("/"))
}

/// Discovery with `env` for environment lookups; absolute paths (from the
/// environment or the defaults) are resolved under `root`.
pub fn discover(env: &dyn Fn(&str) -> Option<String>, root: &Path) -> Result<Target> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let api_version = match var("DOCKER_API_VERSION") {
        Some(v) if is_version(&v) => Some(v),
        Some(value) => return Err(DockerError::BadApiVersion { value }),
        None => None,
    };
    let config_dir = var("DOCKER_CONFIG")
        .map(|d| under(root, &d))
        .or_else(|| var("HOME").map(|h| under(root, &h).join(".docker")));

    if let Some(host) = var("DOCKER_HOST") {
        let tls = var("DOCKER_TLS_VERIFY").map(|_| {
            let dir = var("DOCKER_CERT_PATH")
                .map(|d| under(root, &d))
                .or_else(|| config_dir.clone())
                .unwrap_or_default();
            let files = TlsFiles::from_dir(&dir);
            // Verification needs the CA: name the file even when it is missing.
            TlsFiles {
                ca: Some(dir.join("ca.pem")),
                ..files
            }
        });
        return Ok(Target {
            endpoint: parse_host(&host, tls, root)?,
            api_version,
            source: Source::DockerHost,
        });
    }

    let context = match var("DOCKER_CONTEXT") {
        Some(name) => Some((name, ContextFrom::Env)),
        None => match &config_dir {
            Some(dir) => current_context(&dir.join("config.json"))?
                .map(|name| (name, ContextFrom::ConfigFile)),
            None => None,
        },
    };
    if let (Some((name, from)), Some(dir)) = (context, &config_dir)
        && name != "default"
        && let Some(endpoint) = context_endpoint(dir, &name, from, root)?
    {
        return Ok(Target {
            endpoint,
            api_version,
            source: Source::Context(name),
        });
    }

    let candidates = [
        Some(under(root, "/var/run/docker.sock")),
        var("XDG_RUNTIME_DIR").map(|d| under(root, &d).join("docker.sock")),
        var("HOME").map(|h| under(root, &h).join(".docker/run/docker.sock")),
    ];
    let socket = candidates
        .iter()
        .flatten()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| under(root, "/var/run/docker.sock"));
    Ok(Target {
        endpoint: Endpoint::Unix(socket),
        api_version,
        source: Source::Default,
    })
}

fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `X.Y` with decimal numbers.
pub fn is_version(v: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    v.split_once('.').is_some_and(|(a, b)| num(a) && num(b))
}

fn current_context(config: &Path) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "currentContext", default)]
        current_context: Option<String>,
    }
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_err(config, e.to_string())),
    };
    let parsed: Config =
        serde_json::from_str(&text).map_err(|e| config_err(config, e.to_string()))?;
    Ok(parsed.current_context.filter(|c| !c.is_empty()))
}

fn config_err(path: &Path, detail: String) -> DockerError {
    DockerError::Config {
        what: path.display().to_string(),
        detail,
    }
}

/// The endpoint of context `name`; `None` when its docker endpoint has no host.
/// Errors name the context, never its `meta/<sha256>` storage path, which
/// means nothing to an operator.
fn context_endpoint(
    config_dir: &Path,
    name: &str,
    from: ContextFrom,
    root: &Path,
) -> Result<Option<Endpoint>> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints", default)]
        endpoints: Endpoints,
    }
    #[derive(Deserialize, Default)]
    struct Endpoints {
        docker: Option<DockerEndpoint>,
    }
    #[derive(Deserialize)]
    struct DockerEndpoint {
        #[serde(rename = "Host", default)]
        host: String,
        #[serde(rename = "SkipTLSVerify", default)]
        skip_tls_verify: bool,
    }
    let id = sha256::hex_digest(name.as_bytes());
    let meta_path = config_dir.join("contexts/meta").join(&id).join("meta.json");
    let contexts = config_dir.join("contexts");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DockerError::NoSuchContext {
            name: name.to_owned(),
            from,
            dir: contexts.clone(),
        },
        _ => DockerError::Config {
            what: format!("context {name:?}"),
            detail: format!("cannot read its metadata under {}: {e}", contexts.display()),
        },
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| DockerError::Config {
        what: format!("context {name:?}"),
        detail: format!("its metadata is not valid JSON: {e}"),
    })?;
    let Some(docker) = meta.endpoints.docker.filter(|d| !d.host.is_empty()) else {
        return Ok(None);
    };
    let tls_dir = config_dir.join("contexts/tls").join(&id).join("docker");
    let tls = tls_dir.is_dir().then(|| TlsFiles::from_dir(&tls_dir));
    if docker.skip_tls_verify && docker.host.starts_with("tcp://") {
        return Err(DockerError::Endpoint {
            host: docker.host,
            reason: "contexts with SkipTLSVerify are not supported; give the context the daemon's CA",
        });
    }
    parse_host(&docker.host, tls, root).map(Some)
}

/// Parses a `DOCKER_HOST`-style address; `tls` applies to TCP hosts only.
pub fn parse_host(host: &str, tls: Option<TlsFiles>, root: &Path) -> Result<Endpoint> {
    let bad = |reason| DockerError::Endpoint {
        host: host.to_string(),
        reason,
    };
    let (scheme, rest) = host.split_once("://").unwrap_or(("tcp", host));
    match scheme {
        "unix" if rest.is_empty() => Err(bad("the unix:// address has no socket path")),
        "unix" => Ok(Endpoint::Unix(under(root, rest))),
        "tcp" => {
            let authority = rest.split('/').next().unwrap_or("");
            let default_port = if tls.is_some() { 2376 } else { 2375 };
            let (h, port) =
                split_host_port(authority).ok_or_else(|| bad("expected tcp://HOST:PORT"))?;
            let port = match port {
                None => default_port,
                Some(p) => p
                    .parse()
                    .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
            };
            let h = if h.is_empty() { "127.0.0.1" } else { h };
            Ok(Endpoint::Tcp {
                host: h.to_string(),
                port,
                tls,
            })
        }
        "ssh" => Err(bad(
            "ssh:// is not supported; forward the daemon's socket (e.g. ssh -L) and use unix:// or tcp://",
        )),
        _ => Err(bad(
            "unsupported scheme; use unix:///path or tcp://host:port",
        )),
    }
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after {
            "" => Some((h, None)),
            p => Some((h, Some(p.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((_, p)) if p.contains(':') => None,
        Some((h, p)) => Some((h, Some(p))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests;
