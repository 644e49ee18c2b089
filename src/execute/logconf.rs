//! Task container logs on the host, bounded by default: whatever a task
//! prints, Docker keeps at most `max-size` × `max-file` bytes of it.
//!
//! Owns [`HostLogs`]: the daemon's default log driver (`GET /info`
//! `LoggingDriver`, asked once and again after a create refused the
//! options), and the `HostConfig.LogConfig` that follows from it and the
//! configured limits. Only `json-file` and `local` are given limits; any
//! other driver is the operator's choice and is left alone, and `Type` is
//! never set, so the daemon's driver (and its other options) stay what the
//! operator configured. It must not build the rest of the create body.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::config::ContainerLogs;
use crate::docker::{Docker, DockerError};

/// The `LogConfig` for containers on a daemon whose default driver is
/// `driver`, or `None` to leave the daemon's settings alone.
pub fn log_config(driver: &str, limits: ContainerLogs) -> Option<Value> {
    let (size, files) = limits.limit?;
    matches!(driver, "json-file" | "local")
        .then(|| json!({"Config": {"max-size": size.to_string(), "max-file": files.to_string()}}))
}

/// The configured limits and what the daemon's default driver was.
pub struct HostLogs {
    limits: ContainerLogs,
    driver: Mutex<Option<String>>,
}

impl HostLogs {
    /// Limits to apply (when the daemon's driver takes them).
    pub fn new(limits: ContainerLogs) -> Self {
        Self {
            limits,
            driver: Mutex::new(None),
        }
    }

    fn current(&self, docker: &Docker) -> Option<Value> {
        self.limits.limit?;
        let mut driver = self.driver.lock().unwrap_or_else(|e| e.into_inner());
        if driver.is_none() {
            match docker.info() {
                Ok(info) => {
                    if log_config(&info.logging_driver, self.limits).is_none() {
                        log::info!(
                            "the Docker daemon's default log driver is {:?}: task container logs are left to its settings",
                            info.logging_driver
                        );
                    }
                    *driver = Some(info.logging_driver);
                }
                Err(e) => {
                    log::warn!("could not read the Docker daemon's log driver: {e}");
                    return None;
                }
            }
        }
        log_config(driver.as_deref().unwrap_or_default(), self.limits)
    }

    /// Creates the container with the log limits in its body; when the
    /// daemon refuses them (its default driver changed since it was asked),
    /// asks again and retries once.
    pub fn create(
        &self,
        docker: &Docker,
        name: &str,
        body: &mut crate::container_spec::CreateBody<'_>,
    ) -> Result<String, DockerError> {
        self.apply(docker, body);
        match docker.create(name, body) {
            Err(DockerError::Api {
                status: 400,
                message,
                ..
            }) if message.contains("log") && body["HostConfig"].get("LogConfig").is_some() => {
                *self.driver.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.apply(docker, body);
                docker.create(name, body)
            }
            other => other,
        }
    }

    fn apply(&self, docker: &Docker, body: &mut Value) {
        let host = &mut body["HostConfig"];
        match self.current(docker) {
            Some(config) => host["LogConfig"] = config,
            None => {
                if let Some(map) = host.as_object_mut() {
                    map.remove("LogConfig");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_file_and_local_get_limits() {
        let limits = ContainerLogs {
            limit: Some((10 << 20, 3)),
        };
        let expected = json!({"Config": {"max-size": "10485760", "max-file": "3"}});
        assert_eq!(log_config("json-file", limits), Some(expected.clone()));
        assert_eq!(log_config("local", limits), Some(expected));
        for other in ["journald", "syslog", "none", "fluentd", ""] {
            assert_eq!(log_config(other, limits), None, "{other}");
        }
        assert_eq!(log_config("json-file", ContainerLogs { limit: None }), None);
    }
}
