//! Container calls of the typed Engine API: create, start, wait, inspect,
//! kill, stop, remove, logs, export and the archive endpoints.
//!
//! Engine calls only: the container spec arrives as ready JSON and names come
//! from the caller; nothing here decides what a task container looks like.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::api::{
    Docker, MAX_JSON, SHORT, api_error, enc, expect_success, label_filter, null_as_default,
};
use super::client::{AbortSlot, Body, BodyReader};
use super::error::{DockerError, Result};
use super::logs::TailCollector;
use crate::http::ParseError;

/// The answer of `wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitResult {
    /// The container's exit code.
    pub status_code: i64,
    /// The daemon's error waiting, if any.
    pub error: Option<String>,
}

/// `State` of `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    /// `created`, `running`, `exited`, ...
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Whether it runs now.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Exit code once exited (127/126/128 for a failed start).
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    /// Whether the kernel OOM killer hit it (independent of the exit code).
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    /// The daemon's error starting or running it.
    #[serde(rename = "Error", default)]
    pub error: String,
    /// RFC 3339 start time.
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
    /// RFC 3339 end time.
    #[serde(rename = "FinishedAt", default)]
    pub finished_at: String,
}

/// `GET /containers/{id}/json`: the state and what a process that did not
/// create the container needs to take it over.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ContainerDetails {
    /// Its state.
    #[serde(rename = "State", default)]
    pub state: ContainerState,
    /// Its name, with a leading `/`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// What it was created with.
    #[serde(rename = "Config", default)]
    pub config: ContainerConfig,
}

/// `Config` of `GET /containers/{id}/json`, the fields the worker reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    /// `KEY=VALUE` entries. Values are secrets.
    #[serde(rename = "Env", default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// Labels.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// The image, as given at create.
    #[serde(rename = "Image", default)]
    pub image: String,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Container ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// Names, each with a leading `/`.
    #[serde(rename = "Names", default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// Image as given at create.
    #[serde(rename = "Image", default)]
    pub image: String,
    /// `created`, `running`, `exited`, ...
    #[serde(rename = "State", default)]
    pub state: String,
    /// Labels.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    #[serde(rename = "Created", default)]
    pub created: i64,
}

impl Docker {
    /// `POST /containers/create?name=…` with `body` as the config; returns the ID.
    /// 404 (no such image) and 409 (name in use) keep the daemon's message.
    /// `body` is serialised straight onto the connection (once to count its
    /// bytes, once to send them), so a large environment is never copied.
    pub fn create<B: Serialize + ?Sized>(&self, name: &str, body: &B) -> Result<String> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        struct Count(u64);
        impl Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let write =
            |out: &mut dyn Write| serde_json::to_writer(out, body).map_err(std::io::Error::other);
        let mut count = Count(0);
        write(&mut count).map_err(|e| DockerError::Io {
            call: "POST /containers/create".into(),
            source: e,
        })?;
        let path = format!("/containers/create?name={}", enc(name));
        let created: Created = self.send_json("POST", path, Body::JsonWriter(count.0, &write))?;
        Ok(created.id)
    }

    /// `POST /containers/{id}/start`; already started (304) is fine.
    pub fn start(&self, id: &str) -> Result<()> {
        self.no_content(
            "POST",
            format!("/containers/{}/start", enc(id)),
            Body::Empty,
            SHORT,
        )
    }

    /// Waits until the container is not running. Start it first: a created
    /// container answers at once. A reply cut off (daemon restart) is
    /// [`DockerError::Truncated`], never an exit code.
    pub fn wait(&self, id: &str, abort: &AbortSlot) -> Result<WaitResult> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(rename = "StatusCode")]
            status_code: i64,
            #[serde(rename = "Error")]
            error: Option<WaitError>,
        }
        #[derive(Deserialize)]
        struct WaitError {
            #[serde(rename = "Message", default)]
            message: String,
        }
        let path = format!("/containers/{}/wait?condition=not-running", enc(id));
        let resp = expect_success(self.send("POST", path, Body::Empty, None, Some(abort))?)?;
        let call = resp.body.call().to_string();
        let body = resp.read_limited(MAX_JSON).map_err(|e| match e {
            DockerError::Http {
                call,
                source: ParseError::Truncated,
            } => DockerError::Truncated { call },
            other => other,
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(DockerError::Truncated { call });
        }
        let reply: Reply =
            serde_json::from_slice(&body).map_err(|source| DockerError::Decode { call, source })?;
        Ok(WaitResult {
            status_code: reply.status_code,
            error: reply.error.map(|e| e.message).filter(|m| !m.is_empty()),
        })
    }

    /// `GET /containers/{id}/json` → `State`.
    pub fn inspect(&self, id: &str) -> Result<ContainerState> {
        #[derive(Deserialize)]
        struct Inspect {
            #[serde(rename = "State", default)]
            state: ContainerState,
        }
        let inspect: Inspect =
            self.send_json("GET", format!("/containers/{}/json", enc(id)), Body::None)?;
        Ok(inspect.state)
    }

    /// `GET /containers/{id}/json` → state, name, env and labels.
    pub fn inspect_details(&self, id: &str) -> Result<ContainerDetails> {
        self.send_json("GET", format!("/containers/{}/json", enc(id)), Body::None)
    }

    /// `POST /containers/{id}/kill?signal=…` (e.g. `SIGKILL`).
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let path = format!("/containers/{}/kill?signal={}", enc(id), enc(signal));
        self.no_content("POST", path, Body::Empty, SHORT)
    }

    /// `POST /containers/{id}/stop?t=…`; already stopped (304) is fine.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let path = format!("/containers/{}/stop?t={}", enc(id), grace.as_secs());
        self.no_content("POST", path, Body::Empty, SHORT + grace)
    }

    /// `DELETE /containers/{id}?force=1&v=1`; gone (404) or removal already
    /// in progress (409) count as done.
    pub fn remove(&self, id: &str) -> Result<()> {
        let path = format!("/containers/{}?force=1&v=1", enc(id));
        match self.no_content("DELETE", path, Body::None, SHORT) {
            Err(DockerError::Api { status: 404, .. }) => Ok(()),
            Err(DockerError::Api {
                status: 409,
                message,
                ..
            }) if message.contains("already in progress") => Ok(()),
            other => other,
        }
    }

    /// The last `tail_lines` lines of stdout and stderr interleaved, at most
    /// `byte_budget` bytes of them; stops reading at the budget.
    pub fn logs_tail(&self, id: &str, tail_lines: u32, byte_budget: usize) -> Result<String> {
        let path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&tail={tail_lines}",
            enc(id)
        );
        let resp = expect_success(self.send("GET", path, Body::None, Some(SHORT), None)?)?;
        let mut body = resp.body;
        let mut collector = TailCollector::new(byte_budget);
        let mut buf = vec![0u8; 16 * 1024];
        while !collector.is_full() {
            let n = body.read(&mut buf).map_err(|e| body.error(e))?;
            if n == 0 {
                break;
            }
            collector
                .feed(&buf[..n])
                .map_err(|_| DockerError::Logs { id: id.to_string() })?;
        }
        Ok(collector.into_string())
    }

    /// `GET /containers/{id}/export`: the container's filesystem as a tar
    /// stream, read as it arrives.
    pub fn export(&self, id: &str, abort: &AbortSlot) -> Result<BodyReader> {
        let resp = self.send(
            "GET",
            format!("/containers/{}/export", enc(id)),
            Body::None,
            None,
            Some(abort),
        )?;
        Ok(expect_success(resp)?.body)
    }

    /// `PUT /containers/{id}/archive?path=…`: extracts the tar stream `body`
    /// into the container at `path`, uploaded chunked as it is read.
    pub fn put_archive(
        &self,
        id: &str,
        path: &str,
        body: &mut dyn Read,
        abort: &AbortSlot,
    ) -> Result<()> {
        let target = format!("/containers/{}/archive?path={}", enc(id), enc(path));
        let resp = self.send(
            "PUT",
            target,
            Body::Stream("application/x-tar", body),
            None,
            Some(abort),
        )?;
        expect_success(resp)?.read_limited(MAX_JSON).map(drop)
    }

    /// `HEAD /containers/{id}/archive?path=…`: whether the path exists.
    pub fn head_archive(&self, id: &str, path: &str) -> Result<bool> {
        let target = format!("/containers/{}/archive?path={}", enc(id), enc(path));
        let resp = self.send("HEAD", target, Body::None, Some(SHORT), None)?;
        match resp.status() {
            200 => Ok(true),
            404 => {
                // A HEAD reply has no body to say whether the path or the
                // container is missing: ask about the container.
                let exists = self.send(
                    "GET",
                    format!("/containers/{}/json", enc(id)),
                    Body::None,
                    Some(SHORT),
                    None,
                )?;
                match exists.status() {
                    200 => Ok(false),
                    _ => Err(api_error(exists)),
                }
            }
            _ => Err(api_error(resp)),
        }
    }

    /// All containers (running or not) carrying all of `labels` (`key` or `key=value`).
    pub fn list_by_label(&self, labels: &[&str]) -> Result<Vec<ContainerSummary>> {
        self.send_json(
            "GET",
            format!("/containers/json?all=1&filters={}", label_filter(labels)),
            Body::None,
        )
    }

    /// A call whose success reply carries nothing the caller needs.
    fn no_content(
        &self,
        method: &'static str,
        path: String,
        body: Body<'_>,
        timeout: Duration,
    ) -> Result<()> {
        let resp = expect_success(self.send(method, path, body, Some(timeout), None)?)?;
        resp.read_limited(MAX_JSON).map(drop)
    }
}
