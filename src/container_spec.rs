//! From a task assignment to the container the worker creates for it
//! (`shared/spec/TASK.md` §1, §3–§6).
//!
//! Owns the pure translation: image choice, sidecar list and its validation,
//! the environment (names validated, one entry per name, operator last), the
//! agent command line, labels, resource limits, and the exact
//! `POST /containers/create` body. The environment is kept as references
//! into the assignment and the configuration, and written into the request
//! body straight from them, so an `env_vars` value is never copied. It does no I/O: it must not talk to Docker, read files or log; the
//! Docker backend calls [`build`] and [`create_body`] and does the rest.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{AGENT_MOUNT_PATH, Config, DEFAULT_IMAGE, Hardening, VolumeMount};
use crate::untrusted::Escaped;
use crate::wire::{FailureReason, InstanceShape, TaskAssignment};

mod args;
mod body;
mod env;

use args::snapshot;
pub use args::{Arg, agent_args, mcp_json};
pub use body::{CreateBody, create_body};
pub use env::{check_env_vars, environment, environment_entries};

/// Common prefix of every label the worker puts on its containers.
pub const LABEL_PREFIX: &str = "dev.warp.oz-agent-worker.";
/// Label marking a container as created by this worker (value `true`).
pub const LABEL_MANAGED: &str = "dev.warp.oz-agent-worker.managed";
/// Label holding the worker id.
pub const LABEL_WORKER_ID: &str = "dev.warp.oz-agent-worker.worker-id";
/// Label holding the task id.
pub const LABEL_TASK_ID: &str = "dev.warp.oz-agent-worker.task-id";
/// Label holding the execution id.
pub const LABEL_EXECUTION_ID: &str = "dev.warp.oz-agent-worker.execution-id";

/// The container's working directory.
pub const WORKING_DIR: &str = "/workspace";
const ENTRYPOINT: &str = "/agent/entrypoint.sh";

/// What [`build`] needs from the worker's configuration.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SpecInputs {
    /// This worker's id (a label).
    pub worker_id: String,
    /// Warp server root, for the agent and `WARP_SERVER_ROOT_URL`.
    pub server_root_url: String,
    /// The worker's `--idle-on-complete` value; `None` or empty = unset.
    pub idle_on_complete: Option<String>,
    /// Session-sharing server for the agent; `None` or empty = unset.
    pub session_sharing_server_url: Option<String>,
    /// The operator's environment (`-e` and the config file). Values are secrets.
    pub operator_env: BTreeMap<String, String>,
    /// The operator's bind mounts.
    pub volumes: Vec<VolumeMount>,
    /// Image for tasks that name none; empty = `ubuntu:22.04`.
    pub default_image: String,
    /// Replaces the orchestrator's agent sidecar image.
    pub sidecar_image: Option<String>,
    /// Options hardening every task container.
    pub hardening: Hardening,
}

impl SpecInputs {
    /// The inputs taken from a validated configuration.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            worker_id: cfg.worker_id.clone(),
            server_root_url: cfg.server_root_url.clone(),
            idle_on_complete: cfg.idle_on_complete.clone(),
            session_sharing_server_url: cfg.session_sharing_server_url.clone(),
            operator_env: cfg.docker.environment.clone(),
            volumes: cfg.docker.volumes.clone(),
            default_image: cfg.docker.default_image.clone(),
            sidecar_image: cfg.docker.sidecar_image.clone(),
            hardening: cfg.docker.hardening.clone(),
        }
    }
}

// The operator's environment values are secrets: show names only.
impl fmt::Debug for SpecInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecInputs")
            .field("worker_id", &self.worker_id)
            .field("server_root_url", &self.server_root_url)
            .field("idle_on_complete", &self.idle_on_complete)
            .field(
                "session_sharing_server_url",
                &self.session_sharing_server_url,
            )
            .field(
                "operator_env",
                &self.operator_env.keys().collect::<Vec<_>>(),
            )
            .field("volumes", &self.volumes)
            .field("default_image", &self.default_image)
            .field("sidecar_image", &self.sidecar_image)
            .field("hardening", &self.hardening)
            .finish()
    }
}

/// One sidecar image whose filesystem is mounted into the task container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Image as named by the orchestrator or the operator (before any mirror rewrite).
    pub image: String,
    /// Where its filesystem appears in the task container.
    pub mount_path: String,
    /// Mounted `:ro` when true, `:rw` otherwise.
    pub read_only: bool,
}

/// CPU and memory limits from the task's `instance_shape`; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `HostConfig.NanoCpus`.
    pub nano_cpus: Option<i64>,
    /// `HostConfig.Memory`, and `MemorySwap` too (no swap beyond the limit).
    pub memory_bytes: Option<i64>,
}

/// Everything needed to create one task container; borrows the assignment
/// and the configuration it was built from.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerSpec<'a> {
    /// Task image, as named (before any mirror rewrite).
    pub image: String,
    /// Sidecars in mount order: the agent sidecar first.
    pub sidecars: Vec<Sidecar>,
    /// `(KEY, VALUE)` entries, one per name, in order. Values are secrets.
    pub env: Vec<(&'a str, &'a str)>,
    /// `Cmd`: the entrypoint followed by the agent arguments.
    pub cmd: Vec<Arg<'a>>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// The operator's binds, rendered; they follow the sidecar volumes.
    pub binds: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Hardening options.
    pub hardening: Hardening,
}

// Env values are secrets: show names only.
impl fmt::Debug for ContainerSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| *k).collect();
        f.debug_struct("ContainerSpec")
            .field("image", &self.image)
            .field("sidecars", &self.sidecars)
            .field("env", &env_names)
            .field("cmd", &self.cmd)
            .field("working_dir", &self.working_dir)
            .field("labels", &self.labels)
            .field("binds", &self.binds)
            .field("limits", &self.limits)
            .field("hardening", &self.hardening)
            .finish()
    }
}

/// Why an assignment cannot become a container; the task fails
/// `sidecar_prep` (sidecar list) or `container_create` (environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// An `env_vars` name Docker and POSIX cannot take as one variable.
    BadEnvName {
        /// The name as sent.
        name: String,
        /// What is wrong with it.
        problem: EnvNameProblem,
    },
    /// An `env_vars` value holding a NUL byte (the runtime would refuse it at start).
    EnvValueNul {
        /// Its name.
        name: String,
    },
    /// A sidecar names no image.
    SidecarWithoutImage {
        /// Its mount path.
        mount_path: String,
    },
    /// A sidecar has no mount path.
    SidecarWithoutMountPath {
        /// Its image.
        image: String,
    },
    /// A mount path that is not absolute, or holds a `:` (it would break the bind).
    SidecarBadMountPath {
        /// Its image.
        image: String,
        /// The path.
        mount_path: String,
    },
    /// Two sidecars share a mount path.
    DuplicateMountPath {
        /// The second sidecar's image.
        image: String,
        /// The shared path.
        mount_path: String,
    },
}

/// What makes an `env_vars` name unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvNameProblem {
    /// The name is empty.
    Empty,
    /// It holds `=`, which ends a name: `A=B` would set `A`.
    Equals,
    /// It holds a NUL byte, which ends a C string.
    Nul,
}

impl SpecError {
    /// The `failure_reason` the task fails with.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Self::BadEnvName { .. } | Self::EnvValueNul { .. } => FailureReason::ContainerCreate,
            _ => FailureReason::SidecarPrep,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEnvName { name, problem } => {
                let why = match problem {
                    EnvNameProblem::Empty => "is empty",
                    EnvNameProblem::Equals => "contains '=' (it would set another variable)",
                    EnvNameProblem::Nul => "contains a NUL byte",
                };
                write!(f, "env_vars name {:?} {why}", Escaped(name))
            }
            Self::EnvValueNul { name } => {
                write!(
                    f,
                    "env_vars value of {:?} contains a NUL byte",
                    Escaped(name)
                )
            }
            Self::SidecarWithoutImage { mount_path } => write!(
                f,
                "the sidecar for mount path {mount_path:?} has an empty image"
            ),
            Self::SidecarWithoutMountPath { image } => {
                write!(f, "sidecar {image} has an empty mount path")
            }
            Self::SidecarBadMountPath { image, mount_path } => write!(
                f,
                "sidecar {image} has mount path {mount_path:?}, which must be absolute and contain no ':'"
            ),
            Self::DuplicateMountPath { image, mount_path } => {
                write!(f, "duplicate mount path {mount_path} for sidecar {image}")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// Turns an assignment into the container to create.
pub fn build<'a>(
    assignment: &'a TaskAssignment,
    cfg: &'a SpecInputs,
) -> Result<ContainerSpec<'a>, SpecError> {
    check_env_vars(assignment)?;
    let sidecars = sidecars(assignment, cfg)?;
    let mut cmd = vec![Arg::from(ENTRYPOINT)];
    cmd.extend(args::agent_arguments(assignment, cfg));
    Ok(ContainerSpec {
        image: image(assignment, cfg),
        sidecars,
        env: environment_entries(assignment, cfg),
        cmd,
        working_dir: WORKING_DIR.to_owned(),
        labels: labels(assignment, cfg),
        binds: cfg.volumes.iter().map(VolumeMount::to_bind).collect(),
        limits: limits(assignment.instance_shape),
        hardening: cfg.hardening.clone(),
    })
}

/// The task image: the assignment's, else the configured default, else `ubuntu:22.04`.
pub fn image(assignment: &TaskAssignment, cfg: &SpecInputs) -> String {
    if !assignment.docker_image.is_empty() {
        assignment.docker_image.clone()
    } else if !cfg.default_image.is_empty() {
        cfg.default_image.clone()
    } else {
        DEFAULT_IMAGE.to_owned()
    }
}

/// The environment id to warn about when the task names one but no image came with it.
pub fn environment_without_image(assignment: &TaskAssignment) -> Option<&str> {
    if !assignment.docker_image.is_empty() {
        return None;
    }
    snapshot(assignment)
        .and_then(|s| s.environment_id.as_deref())
        .filter(|id| !id.trim().is_empty())
}

/// The sidecar list, validated: the agent sidecar (when the assignment has one,
/// with the configured override) then the additional ones in order.
pub fn sidecars(assignment: &TaskAssignment, cfg: &SpecInputs) -> Result<Vec<Sidecar>, SpecError> {
    let mut list = Vec::with_capacity(assignment.additional_sidecars.len() + 1);
    if !assignment.sidecar_image.is_empty() {
        // Like the Go worker, the override replaces the orchestrator's image
        // but does not add an agent sidecar the orchestrator did not ask for.
        let image = match cfg.sidecar_image.as_deref() {
            Some(over) if !over.is_empty() => over,
            _ => assignment.sidecar_image.as_str(),
        };
        list.push(Sidecar {
            image: image.to_owned(),
            mount_path: AGENT_MOUNT_PATH.to_owned(),
            read_only: true,
        });
    }
    list.extend(assignment.additional_sidecars.iter().map(|s| Sidecar {
        image: s.image.clone(),
        mount_path: s.mount_path.clone(),
        read_only: !s.read_write,
    }));
    let mut seen: Vec<&str> = Vec::with_capacity(list.len());
    for s in &list {
        if s.image.is_empty() {
            return Err(SpecError::SidecarWithoutImage {
                mount_path: s.mount_path.clone(),
            });
        }
        if s.mount_path.is_empty() {
            return Err(SpecError::SidecarWithoutMountPath {
                image: s.image.clone(),
            });
        }
        if !s.mount_path.starts_with('/') || s.mount_path.contains(':') {
            return Err(SpecError::SidecarBadMountPath {
                image: s.image.clone(),
                mount_path: s.mount_path.clone(),
            });
        }
        // `/agent` and `/agent/` are the same mount point to Docker.
        let key = match s.mount_path.trim_end_matches('/') {
            "" => "/",
            k => k,
        };
        if seen.contains(&key) {
            return Err(SpecError::DuplicateMountPath {
                image: s.image.clone(),
                mount_path: s.mount_path.clone(),
            });
        }
        seen.push(key);
    }
    Ok(list)
}

/// The labels that let the worker find its own containers.
pub fn labels(assignment: &TaskAssignment, cfg: &SpecInputs) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), cfg.worker_id.clone()),
        (LABEL_TASK_ID.to_owned(), assignment.task_id.clone()),
        (
            LABEL_EXECUTION_ID.to_owned(),
            assignment.execution_id.clone(),
        ),
    ])
}

/// Limits from an instance shape; absent or non-positive axes set none.
pub fn limits(shape: Option<InstanceShape>) -> Limits {
    let Some(shape) = shape else {
        return Limits::default();
    };
    // Saturate rather than wrap: an absurd shape then fails at create with
    // Docker's own words instead of silently becoming a small limit.
    Limits {
        nano_cpus: (shape.vcpus > 0).then(|| shape.vcpus.saturating_mul(1_000_000_000)),
        memory_bytes: (shape.memory_gb > 0).then(|| shape.memory_gb.saturating_mul(1 << 30)),
    }
}

#[cfg(test)]
mod tests;
