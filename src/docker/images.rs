//! Image calls of the typed Engine API: inspect, pull (its progress
//! stream), load (`docker save` archives) and remove.
//!
//! Engine calls only: references arrive resolved and credentials as a ready
//! `X-Registry-Auth` value; which image a task gets is decided elsewhere.

use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;

use super::api::{Docker, MAX_JSON, SHORT, enc, enc_image, expect_success, null_as_default};
use super::client::{AbortSlot, Body, Request};
use super::error::{DockerError, Result};

/// Longest JSON line accepted from a pull's progress stream.
const MAX_PULL_LINE: u64 = 1024 * 1024;

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

impl Docker {
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
        #[serde(flatten)]
        failure: StreamFailure,
    }
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|source| DockerError::Decode {
        call: "POST /images/create".into(),
        source,
    })?;
    if let Some(message) = parsed.failure.message() {
        return Err(DockerError::PullFailed {
            image: image.to_string(),
            message,
        });
    }
    progress(&parsed.progress);
    Ok(())
}

/// The error fields any line of a streamed image reply (pull, load) may
/// carry: the daemon reports a failure mid-stream after its 200.
#[derive(Deserialize)]
struct StreamFailure {
    #[serde(default)]
    error: String,
    #[serde(rename = "errorDetail")]
    error_detail: Option<FailureDetail>,
}

#[derive(Deserialize)]
struct FailureDetail {
    #[serde(default)]
    message: String,
}

impl StreamFailure {
    /// The failure's text (`error`, else `errorDetail.message`), if the
    /// line reports one.
    fn message(self) -> Option<String> {
        let detail = self.error_detail.map(|d| d.message).unwrap_or_default();
        match (self.error.is_empty(), detail.is_empty()) {
            (true, true) => None,
            (true, false) => Some(detail),
            (false, _) => Some(self.error),
        }
    }
}

/// Reads one line of a load's reply: what it loaded, or its error.
fn check_load_line(line: &[u8], report: &mut LoadReport) -> Result<()> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        stream: String,
        #[serde(flatten)]
        failure: StreamFailure,
    }
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let parsed: Line = serde_json::from_slice(line).map_err(|source| DockerError::Decode {
        call: "POST /images/load".into(),
        source,
    })?;
    if let Some(message) = parsed.failure.message() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
