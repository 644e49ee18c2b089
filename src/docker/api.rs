//! The typed Engine API: [`Docker`] holds the client and the negotiated API
//! version; this file has connecting, version/platform, images and volumes
//! (containers are in `containers.rs`).
//!
//! Only Engine calls live here: no task logic, no volume or container naming,
//! no credentials lookup (the caller passes a ready `X-Registry-Auth` value).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
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
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Longest JSON line accepted from a pull's progress stream.
const MAX_PULL_LINE: u64 = 1024 * 1024;

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

/// `GET /images/{name}/json`, the fields the worker uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…` image ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// `repo@sha256:…` digests (empty for a locally built image).
    #[serde(rename = "RepoDigests", default, deserialize_with = "null_as_default")]
    pub repo_digests: Vec<String>,
    /// Image OS.
    #[serde(rename = "Os", default)]
    pub os: String,
    /// Image architecture.
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
}

/// One line of a pull's progress stream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PullProgress {
    /// e.g. `Downloading`, `Pull complete`, `Status: Downloaded newer image …`.
    #[serde(default)]
    pub status: String,
    /// Layer ID or tag, when the line is about one.
    #[serde(default)]
    pub id: String,
    /// Human progress bar, when present.
    #[serde(default)]
    pub progress: String,
    /// Bytes done and total of a `Downloading` / `Extracting` line.
    #[serde(rename = "progressDetail", default)]
    pub detail: ProgressDetail,
}

/// `progressDetail` of a pull line; both absent on most lines.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct ProgressDetail {
    /// Bytes done so far.
    #[serde(default)]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(default)]
    pub total: Option<u64>,
}

/// What `POST /images/load` said it loaded, in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The names of `Loaded image: NAME` lines and the ids of `Loaded image
    /// ID: sha256:…` lines (an image saved without a tag).
    pub loaded: Vec<String>,
}

/// `GET /volumes/{name}`, the fields the worker uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Labels set at creation.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time on the daemon's clock (`2026-12-02T13:12:23Z`);
    /// with the name, the volume's identity (a volume removed and made again
    /// under the same name differs).
    #[serde(rename = "CreatedAt", default)]
    pub created_at: String,
    /// Where the daemon keeps its files, as a path on the daemon's host.
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
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
fn enc_image(s: &str) -> String {
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

    /// `GET /images/{name}/json`; `None` when the daemon has no such image.
    pub fn image_inspect(&self, name: &str) -> Result<Option<ImageInfo>> {
        self.get_optional(format!("/images/{}/json", enc_image(name)))
    }

    /// Pulls `from_image` at `tag` (a tag, or `sha256:…` for a digest; always
    /// sent so the daemon never pulls every tag) for `platform` (`os/arch`).
    /// `auth` is the ready `X-Registry-Auth` value. Reads the progress stream
    /// to its end; an `error` line fails the pull even though the status was 200.
    pub fn image_pull(
        &self,
        from_image: &str,
        tag: &str,
        platform: &str,
        auth: Option<&str>,
        progress: &mut dyn FnMut(&PullProgress),
        abort: &AbortSlot,
    ) -> Result<()> {
        let mut target = format!(
            "/images/create?fromImage={}&tag={}",
            enc(from_image),
            enc(tag)
        );
        if !platform.is_empty() {
            target.push_str(&format!("&platform={}", enc(platform)));
        }
        let headers = auth
            .map(|a| vec![("X-Registry-Auth", a.to_string())])
            .unwrap_or_default();
        let resp = self.client.send(Request {
            method: "POST",
            target: self.path(&target),
            headers,
            body: Body::Empty,
            timeout: None,
            abort: Some(abort),
        })?;
        let resp = expect_success(resp)?;
        let image = format!("{from_image}:{tag}");
        let mut reader = BufReader::new(resp.body);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_PULL_LINE)
                .read_until(b'\n', &mut line)
                .map_err(|e| reader.get_ref().error(e))?;
            if n == 0 {
                return Ok(());
            }
            check_pull_line(&image, &line, progress)?;
        }
    }

    /// `POST /images/load?quiet=1`: uploads `body`, a `docker save` archive
    /// (plain or gzip-compressed: the daemon detects the compression),
    /// chunked as it is read, so the archive is never held in memory. Reads
    /// the reply stream to its end; an `error` line fails the load even
    /// though the status was 200 (the daemon writes the status before it
    /// knows; moby `postImagesLoad`). No time limit: the daemon answers only
    /// once every layer is registered.
    pub fn image_load(&self, body: &mut dyn Read) -> Result<LoadReport> {
        let resp = self.send(
            "POST",
            "/images/load?quiet=1".into(),
            Body::Stream("application/x-tar", body),
            None,
            None,
        )?;
        let resp = expect_success(resp)?;
        let mut report = LoadReport::default();
        let mut reader = BufReader::new(resp.body);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_PULL_LINE)
                .read_until(b'\n', &mut line)
                .map_err(|e| reader.get_ref().error(e))?;
            if n == 0 {
                return Ok(report);
            }
            check_load_line(&line, &mut report)?;
        }
    }

    /// `DELETE /images/{name}?force=1`; an image already gone is fine.
    pub fn image_remove(&self, name: &str) -> Result<()> {
        let path = format!("/images/{}?force=1", enc_image(name));
        let resp = self.send("DELETE", path, Body::None, Some(SHORT), None)?;
        if resp.status() == 404 {
            return Ok(());
        }
        expect_success(resp)?.read_limited(MAX_JSON).map(drop)
    }

    /// `POST /volumes/create` with these labels.
    pub fn volume_create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo> {
        let body = serde_json::json!({ "Name": name, "Labels": labels });
        self.send_json(
            "POST",
            "/volumes/create".into(),
            Body::Json(body.to_string().into_bytes()),
        )
    }

    /// `POST /volumes/create` with the `local` driver and these mount
    /// options (`type`, `device`, `o`), and these labels.
    pub fn volume_create_local(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<&str, String>,
    ) -> Result<VolumeInfo> {
        let body = serde_json::json!({
            "Name": name,
            "Driver": "local",
            "DriverOpts": options,
            "Labels": labels,
        });
        self.send_json(
            "POST",
            "/volumes/create".into(),
            Body::Json(body.to_string().into_bytes()),
        )
    }

    /// `GET /volumes/{name}`; `None` when there is no such volume.
    pub fn volume_inspect(&self, name: &str) -> Result<Option<VolumeInfo>> {
        self.get_optional(format!("/volumes/{}", enc(name)))
    }

    /// `DELETE /volumes/{name}`; a volume already gone is fine.
    pub fn volume_remove(&self, name: &str) -> Result<()> {
        self.volume_remove_existing(name).map(drop)
    }

    /// Removes a volume; `Ok(false)` when there was none of that name.
    pub fn volume_remove_existing(&self, name: &str) -> Result<bool> {
        let resp = self.send(
            "DELETE",
            format!("/volumes/{}", enc(name)),
            Body::None,
            Some(SHORT),
            None,
        )?;
        if resp.status() == 404 {
            return Ok(false);
        }
        expect_success(resp)?
            .read_limited(MAX_ERROR_BODY)
            .map(|_| true)
    }

    /// Volumes carrying all of `labels` (`key` or `key=value`).
    pub fn volume_list_by_label(&self, labels: &[&str]) -> Result<Vec<VolumeInfo>> {
        #[derive(Deserialize)]
        struct List {
            #[serde(rename = "Volumes", default, deserialize_with = "null_as_default")]
            volumes: Vec<VolumeInfo>,
        }
        let list: List = self.send_json(
            "GET",
            format!("/volumes?filters={}", label_filter(labels)),
            Body::None,
        )?;
        Ok(list.volumes)
    }
}

/// Checks one progress line; reports progress or fails on an error line.
fn check_pull_line(
    image: &str,
    line: &[u8],
    progress: &mut dyn FnMut(&PullProgress),
) -> Result<()> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(flatten)]
        progress: PullProgress,
        #[serde(default)]
        error: String,
        #[serde(rename = "errorDetail")]
        error_detail: Option<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
    }
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|source| DockerError::Decode {
        call: "POST /images/create".into(),
        source,
    })?;
    let detail = parsed.error_detail.map(|d| d.message).unwrap_or_default();
    if !parsed.error.is_empty() || !detail.is_empty() {
        let message = if parsed.error.is_empty() {
            detail
        } else {
            parsed.error
        };
        return Err(DockerError::PullFailed {
            image: image.to_string(),
            message,
        });
    }
    progress(&parsed.progress);
    Ok(())
}

/// Reads one line of a load's reply: what it loaded, or its error.
fn check_load_line(line: &[u8], report: &mut LoadReport) -> Result<()> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        stream: String,
        #[serde(default)]
        error: String,
        #[serde(rename = "errorDetail")]
        error_detail: Option<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
    }
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|source| DockerError::Decode {
        call: "POST /images/load".into(),
        source,
    })?;
    let detail = parsed.error_detail.map(|d| d.message).unwrap_or_default();
    if !parsed.error.is_empty() || !detail.is_empty() {
        let message = if parsed.error.is_empty() {
            detail
        } else {
            parsed.error
        };
        return Err(DockerError::LoadFailed { message });
    }
    let text = parsed.stream.trim();
    // "Loaded image ID:" first: "Loaded image:" is its prefix.
    if let Some(name) = text
        .strip_prefix("Loaded image ID:")
        .or_else(|| text.strip_prefix("Loaded image:"))
    {
        report.loaded.push(name.trim().to_owned());
    }
    Ok(())
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

    #[test]
    fn pull_lines() {
        let mut seen = Vec::new();
        let mut cb = |p: &PullProgress| seen.push(p.status.clone());
        check_pull_line(
            "a:1",
            br#"{"status":"Pulling from library/a","id":"1"}"#,
            &mut cb,
        )
        .unwrap();
        check_pull_line("a:1", b"\r\n", &mut cb).unwrap();
        let err = check_pull_line(
            "a:1",
            br#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}"#,
            &mut cb,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pulling image a:1 failed: manifest unknown"
        );
        let err = check_pull_line(
            "a:1",
            br#"{"errorDetail":{"message":"only detail"}}"#,
            &mut cb,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "pulling image a:1 failed: only detail");
        assert_eq!(seen, vec!["Pulling from library/a".to_string()]);
    }

    #[test]
    fn load_lines() {
        let mut report = LoadReport::default();
        for line in [
            &br#"{"stream":"Loaded image: oz-test/a:1\n"}"#[..],
            b"\r\n",
            br#"{"stream":"Loaded image ID: sha256:0123\n"}"#,
            br#"{"status":"Loading layer","progressDetail":{"current":1,"total":2}}"#,
        ] {
            check_load_line(line, &mut report).unwrap();
        }
        assert_eq!(report.loaded, vec!["oz-test/a:1", "sha256:0123"]);
        let err = check_load_line(
            br#"{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}"#,
            &mut report,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Docker daemon could not load it: unexpected EOF"
        );
        assert!(check_load_line(b"not json", &mut report).is_err());
    }
}
