//! The typed Engine API: [`Docker`] holds the client and the negotiated API
//! version; this file has connecting, version/platform and the helpers every
//! call uses (encoding, errors, decoding). Images are in `images.rs`,
//! volumes in `volumes.rs`, containers in `containers.rs`.
//!
//! Only Engine calls live here: no task logic, no volume or container naming,
//! no credentials lookup (the caller passes a ready `X-Registry-Auth` value).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::client::{AbortSlot, Body, Client, Request, Response};
use super::discovery::{Source, Target};
use super::error::{DockerError, Result};
use super::transport::{Connector, Endpoint};

/// Oldest API this worker speaks (Engine 20.10).
pub const MIN_API: (u32, u32) = (1, 41);
/// Newest API this worker was tested against.
pub const MAX_API: (u32, u32) = (1, 51);
/// What the daemon supports when `/_ping` has no `Api-Version` header.
const FALLBACK_API: &str = "1.24";
/// Limit on answering `/_ping` at start.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on each read of a call that should answer promptly.
pub(super) const SHORT: Duration = Duration::from_secs(120);
/// Largest JSON reply read into memory.
pub(super) const MAX_JSON: u64 = 32 * 1024 * 1024;
/// Largest error body kept for a message.
pub(super) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A connection to one Docker daemon at a fixed API version. Cheap to clone
/// and share across threads (clones share the connection pool).
#[derive(Clone)]
pub struct Docker {
    pub(super) client: Client,
    version: String,
}

/// `GET /version`, the fields the worker uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    #[serde(rename = "Version", default)]
    pub version: String,
    /// Highest API version of the engine.
    #[serde(rename = "ApiVersion", default)]
    pub api_version: String,
    /// `linux`.
    #[serde(rename = "Os", default)]
    pub os: String,
    /// `amd64`, `arm64`, ...
    #[serde(rename = "Arch", default)]
    pub arch: String,
}

/// Deserialises JSON `null` as the type's default (the Engine sends `null`
/// for empty lists and maps).
pub(super) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The API version to use given `/_ping`'s `Api-Version` header.
pub fn negotiate(header: Option<&str>) -> String {
    let offered = header
        .and_then(parse_version)
        .unwrap_or_else(|| parse_version(FALLBACK_API).unwrap_or(MIN_API));
    let (major, minor) = offered.min(MAX_API);
    format!("{major}.{minor}")
}

/// `X.Y` as numbers.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Checks the daemon's platform: the sidecar exists only for linux/amd64
/// and linux/arm64. Returns `os/arch`.
pub fn check_platform(info: &VersionInfo) -> Result<String> {
    let platform = format!("{}/{}", info.os, info.arch);
    match platform.as_str() {
        "linux/amd64" | "linux/arm64" => Ok(platform),
        _ => Err(DockerError::UnsupportedPlatform { platform }),
    }
}

/// Percent-encodes a query value or a path segment (RFC 3986 unreserved kept).
pub fn enc(s: &str) -> String {
    enc_keeping(s, b"")
}

/// Percent-encodes an image reference in a path, keeping `/`, `:` and `@`
/// (the Engine routes `/images/{name:.*}/json`).
pub(super) fn enc_image(s: &str) -> String {
    enc_keeping(s, b"/:@")
}

fn enc_keeping(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `filters={"label":["k=v",…]}`, URL-encoded.
pub(super) fn label_filter(labels: &[&str]) -> String {
    let filters = serde_json::json!({ "label": labels });
    enc(&filters.to_string())
}

/// Names the setting behind a TCP address the daemon does not answer on:
/// only the operator's `DOCKER_HOST` or context can have chosen it.
fn with_origin(e: DockerError, source: &Source) -> DockerError {
    let origin = match source {
        Source::DockerHost => "DOCKER_HOST".to_owned(),
        Source::Context(name) => format!("the docker context {name:?}"),
        Source::Default => return e,
    };
    match e {
        DockerError::Connect { addr, source, .. } => DockerError::Connect {
            addr,
            source,
            origin: Some(origin),
        },
        other => other,
    }
}

impl Docker {
    /// Pings the daemon (5 s limit), negotiates the API version (or uses
    /// the pinned one) and refuses daemons older than API 1.41.
    pub fn connect(target: &Target) -> Result<Docker> {
        let client = Client::new(Connector::new(target.endpoint.clone())?);
        let resp = client
            .send(Request {
                method: "GET",
                target: "/_ping".into(),
                headers: Vec::new(),
                body: Body::None,
                timeout: Some(PING_TIMEOUT),
                abort: None,
            })
            .map_err(|e| with_origin(e, &target.source))?;
        let header = resp.head.header("api-version").map(str::to_string);
        let resp = expect_success(resp)?;
        resp.read_limited(MAX_ERROR_BODY)?;
        let version = match &target.api_version {
            Some(pinned) => pinned.clone(),
            None => negotiate(header.as_deref()),
        };
        let docker = Docker { client, version };
        if parse_version(&docker.version).is_none_or(|v| v < MIN_API) {
            let engine_version = docker
                .send_json::<VersionInfo>("GET", "/version".into(), Body::None)
                .map(|v| v.version)
                .unwrap_or_else(|_| "(unknown version)".into());
            return Err(DockerError::ApiTooOld {
                api_version: docker.version,
                engine_version,
            });
        }
        Ok(docker)
    }

    /// The API version every call uses, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.version
    }

    /// The daemon's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.client.connector().endpoint()
    }

    /// `/v{X.Y}{path}`.
    pub(super) fn path(&self, path: &str) -> String {
        format!("/v{}{}", self.version, path)
    }

    /// Sends a request; the caller checks the status.
    pub(super) fn send<'a>(
        &self,
        method: &'static str,
        path: String,
        body: Body<'a>,
        timeout: Option<Duration>,
        abort: Option<&'a AbortSlot>,
    ) -> Result<Response> {
        self.client.send(Request {
            method,
            target: self.path(&path),
            headers: Vec::new(),
            body,
            timeout,
            abort,
        })
    }

    /// A short call whose 2xx reply is JSON.
    pub(super) fn send_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: String,
        body: Body<'_>,
    ) -> Result<T> {
        let resp = expect_success(self.send(method, path, body, Some(SHORT), None)?)?;
        decode(resp)
    }

    /// `GET /_ping` (5 s limit): is the daemon still answering?
    pub fn ping(&self) -> Result<()> {
        self.ping_date().map(drop)
    }

    /// Pings; returns the reply's `Date` header and the call's name.
    fn ping_date(&self) -> Result<(Option<String>, String)> {
        let resp = expect_success(self.send(
            "GET",
            "/_ping".into(),
            Body::None,
            Some(PING_TIMEOUT),
            None,
        )?)?;
        let date = resp.head.header("date").map(str::to_owned);
        let call = resp.body.call().to_string();
        resp.read_limited(MAX_ERROR_BODY)?;
        Ok((date, call))
    }

    /// Whether the daemon answered any call of this client (or its clones)
    /// within the last `window`: as good as a ping.
    pub fn answered_within(&self, window: Duration) -> bool {
        self.client.answered_within(window)
    }

    /// The daemon's clock, Unix seconds, from the `Date` header of a `/_ping`
    /// (every Engine reply carries one; whole seconds are all it gives).
    pub fn daemon_now(&self) -> Result<u64> {
        let (date, call) = self.ping_date()?;
        date.as_deref()
            .and_then(crate::calendar::parse_http_date)
            .ok_or(DockerError::NoDate { call })
    }

    /// A short `GET` whose 2xx reply is JSON and whose 404 means "no such object".
    pub(super) fn get_optional<T: DeserializeOwned>(&self, path: String) -> Result<Option<T>> {
        let resp = self.send("GET", path, Body::None, Some(SHORT), None)?;
        if resp.status() == 404 {
            return Ok(None);
        }
        decode(expect_success(resp)?).map(Some)
    }

    /// `GET /version`.
    pub fn version(&self) -> Result<VersionInfo> {
        self.send_json("GET", "/version".into(), Body::None)
    }

    /// The daemon's `os/arch`, or the error the worker refuses to start with.
    pub fn platform(&self) -> Result<String> {
        check_platform(&self.version()?)
    }
}

/// Turns a non-2xx reply into [`DockerError::Api`] with the daemon's message.
pub(super) fn expect_success(resp: Response) -> Result<Response> {
    if (200..300).contains(&resp.status()) || resp.status() == 304 {
        return Ok(resp);
    }
    Err(api_error(resp))
}

/// [`DockerError::Api`] from an error reply: `{"message": …}`, else the body.
pub(super) fn api_error(resp: Response) -> DockerError {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let status = resp.status();
    let reason = resp.head.reason.clone();
    let call = resp.body.call().to_string();
    let body = match resp.read_limited(MAX_ERROR_BODY) {
        Ok(body) => body,
        Err(e) => return e,
    };
    let message = match serde_json::from_slice::<Message>(&body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
    };
    let message = if message.is_empty() { reason } else { message };
    DockerError::Api {
        call,
        status,
        message,
    }
}

/// Reads a JSON reply.
pub(super) fn decode<T: DeserializeOwned>(resp: Response) -> Result<T> {
    let call = resp.body.call().to_string();
    let body = resp.read_limited(MAX_JSON)?;
    serde_json::from_slice(&body).map_err(|source| DockerError::Decode { call, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("1.41")), "1.41");
        assert_eq!(negotiate(Some(" 1.45 ")), "1.45");
        assert_eq!(negotiate(Some("1.52")), "1.51");
        assert_eq!(negotiate(Some("2.0")), "1.51");
        assert_eq!(negotiate(None), "1.24");
        assert_eq!(negotiate(Some("junk")), "1.24");
        assert_eq!(parse_version("1.9"), Some((1, 9)));
        assert!(parse_version("1.9").unwrap() < parse_version("1.41").unwrap());
    }

    #[test]
    fn platforms() {
        let info = |os: &str, arch: &str| VersionInfo {
            version: "27.0".into(),
            api_version: "1.46".into(),
            os: os.into(),
            arch: arch.into(),
        };
        assert_eq!(
            check_platform(&info("linux", "amd64")).unwrap(),
            "linux/amd64"
        );
        assert_eq!(
            check_platform(&info("linux", "arm64")).unwrap(),
            "linux/arm64"
        );
        assert_eq!(
            check_platform(&info("windows", "amd64"))
                .unwrap_err()
                .to_string(),
            "unsupported Docker platform windows/amd64 (only linux/amd64 and linux/arm64 are supported)"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(enc("/oz fill"), "%2Foz%20fill");
        assert_eq!(
            enc_image("localhost:5000/a/b@sha256:ab"),
            "localhost:5000/a/b@sha256:ab"
        );
        assert_eq!(enc_image("a b"), "a%20b");
        assert_eq!(
            label_filter(&["oz-agent-worker.test=1"]),
            "%7B%22label%22%3A%5B%22oz-agent-worker.test%3D1%22%5D%7D"
        );
    }
}
