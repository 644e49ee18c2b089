//! The Docker task runner: one task assignment, run to its end in a real
//! container (`shared/spec/TASK.md` end to end).
//!
//! Owns [`DockerRunner`] (the flow: spec → image → sidecar volumes → create
//! → musl probe → start → wait → exit status → logs → remove) and the
//! mapping of each step's failure to its `failure_reason`. Image pulls live
//! in [`image`], sidecar volumes in [`sidecar`], leftovers in [`reaper`],
//! pure names in [`names`]. Cancel hooks registered here only abort in-flight
//! I/O; stopping and removing happen on the task's own thread, except a
//! removal the daemon could not answer (it was down), which a background
//! thread retries until the daemon is back.

pub mod image;
pub mod names;
pub mod reaper;
pub mod sidecar;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::container_spec::{self, Limits, SpecInputs};
use crate::docker::auth::CredentialEnv;
use crate::docker::{AbortSlot, Docker, DockerError};
use crate::logging;
use crate::task::{CancelToken, TaskOutcome, TaskRunner};
use crate::wire::{FailureReason, TaskAssignment};

pub use image::{ImageError, ImageSettings, PULL_STALL_TIMEOUT, PreparedImage};
pub use sidecar::{SidecarError, SidecarVolumes};

/// Lines of container output logged when a task ends.
const LOG_TAIL_LINES: u32 = 100;
/// Bytes of container output logged at most.
const LOG_TAIL_BYTES: usize = 64 * 1024;

/// What the runner needs from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Inputs of the container spec.
    pub spec: SpecInputs,
    /// Pull policy, mirrors, credentials and the daemon platform.
    pub images: ImageSettings,
    /// Remove task containers when they end (cancelled ones are always removed).
    pub cleanup: bool,
    /// SIGTERM → SIGKILL grace when stopping a cancelled task.
    pub stop_grace: Duration,
    /// Replaces the limits from `instance_shape` for every task. Not a config
    /// option: `memory_gb` only speaks whole GiB, tests need megabytes.
    pub limits_override: Option<Limits>,
}

impl RunnerSettings {
    /// Settings from a validated configuration; `platform` is the daemon's `os/arch`.
    pub fn from_config(cfg: &Config, platform: String) -> Self {
        Self {
            spec: SpecInputs::from_config(cfg),
            images: ImageSettings {
                platform,
                policy: cfg.docker.image_pull_policy,
                mirrors: cfg.docker.registry_mirrors.clone(),
                credentials: CredentialEnv::from_process(),
                pull_stall_timeout: image::PULL_STALL_TIMEOUT,
            },
            cleanup: cfg.cleanup,
            stop_grace: cfg.docker.stop_grace,
            limits_override: None,
        }
    }
}

/// Runs tasks in Docker containers. Share one per worker (its sidecar volume
/// record and active-task set are process-wide).
pub struct DockerRunner {
    docker: Docker,
    settings: RunnerSettings,
    volumes: Arc<SidecarVolumes>,
    active: Arc<Mutex<HashSet<String>>>,
}

impl DockerRunner {
    /// A runner on `docker` with `settings`.
    pub fn new(docker: Docker, settings: RunnerSettings) -> Self {
        let volumes = SidecarVolumes::new(docker.clone(), settings.spec.worker_id.clone());
        Self {
            docker,
            settings,
            volumes,
            active: Arc::default(),
        }
    }

    /// The sidecar volumes (fill count, observer; the reaper asks which are busy).
    pub fn volumes(&self) -> &Arc<SidecarVolumes> {
        &self.volumes
    }

    /// Whether `task_id` is running in this runner now.
    pub fn is_active(&self, task_id: &str) -> bool {
        lock(&self.active).contains(task_id)
    }

    /// Starts a thread that reaps leftovers every `interval`, sparing the
    /// tasks this runner runs, volumes being filled, and containers younger
    /// than `grace`. Stops when the handle is dropped.
    pub fn spawn_reaper(&self, interval: Duration, grace: Duration) -> reaper::ReaperHandle {
        let active = Arc::clone(&self.active);
        reaper::spawn_periodic(
            self.docker.clone(),
            self.settings.spec.worker_id.clone(),
            Arc::clone(&self.volumes),
            Arc::new(move |task: &str| lock(&active).contains(task)),
            interval,
            grace,
        )
    }

    fn execute(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        let spec = match container_spec::build(task, &self.settings.spec) {
            Ok(spec) => spec,
            Err(e) => return TaskOutcome::failed(e.failure_reason(), e.to_string()),
        };
        if let Some(env) = container_spec::environment_without_image(task) {
            log::warn!(
                "task names environment {env} but no image came with it; using {}",
                spec.image
            );
        }
        // The dispatcher masks env_vars; the operator's values are secrets too.
        let _secrets: Vec<_> = self
            .settings
            .spec
            .operator_env
            .values()
            .map(|v| logging::register_secret(v))
            .collect();

        let image = match image::ensure(&self.docker, &self.settings.images, &spec.image, cancel) {
            Ok(image) => image,
            Err(e) => return TaskOutcome::failed(FailureReason::ImagePull, e.to_string()),
        };
        let mut sidecar_volumes = Vec::with_capacity(spec.sidecars.len());
        let mut sidecar_images = Vec::with_capacity(spec.sidecars.len());
        for sidecar in &spec.sidecars {
            if cancel.is_cancelled() {
                return TaskOutcome::failed(FailureReason::SidecarPrep, "cancelled");
            }
            let prepared =
                match image::ensure(&self.docker, &self.settings.images, &sidecar.image, cancel) {
                    Ok(p) => p,
                    Err(e) => {
                        let detail = format!("sidecar {}: {e}", sidecar.mount_path);
                        return TaskOutcome::failed(FailureReason::SidecarPrep, detail);
                    }
                };
            let volume = self.volumes.ensure(
                &sidecar.image,
                &prepared.reference,
                &prepared.info.repo_digests,
                &prepared.info.id,
                cancel,
            );
            match volume {
                Ok(v) => sidecar_volumes.push(v),
                Err(e) => return TaskOutcome::failed(FailureReason::SidecarPrep, e.to_string()),
            }
            sidecar_images.push(prepared);
        }
        if cancel.is_cancelled() {
            return TaskOutcome::failed(FailureReason::ContainerCreate, "cancelled");
        }

        let mut spec = spec;
        if let Some(limits) = self.settings.limits_override {
            spec.limits = limits;
        }
        let mut body = container_spec::create_body(&spec, &image.reference, &sidecar_volumes);
        if !self.settings.cleanup {
            body["Labels"][names::LABEL_KEEP] = "true".into();
        }
        let name = names::container_name(&task.task_id, &task.execution_id, names::nonce());
        let id = match self.docker.create(&name, &body) {
            Ok(id) => id,
            Err(e) => {
                let detail = format!("failed to create container: {e}");
                return TaskOutcome::failed(FailureReason::ContainerCreate, detail);
            }
        };
        let mut container = TaskContainer {
            docker: &self.docker,
            id,
            keep: !self.settings.cleanup,
        };
        log::debug!("created container {name} ({})", container.id);

        // The musl probe runs on the real task container (created, not
        // started) after the sidecars because its body names their volumes,
        // and a bind to a missing volume would make Docker create it empty.
        let loader = names::musl_loader(&self.settings.images.platform);
        match self.docker.head_archive(&container.id, loader) {
            Ok(true) => {
                container.keep = false;
                let detail = format!(
                    "image {} uses musl libc (for example Alpine Linux); the Warp agent needs a glibc-based image such as Debian or Ubuntu",
                    spec.image
                );
                return TaskOutcome::failed(FailureReason::ImagePull, detail);
            }
            Ok(false) => {}
            Err(e) => log::warn!("could not check image {} for musl libc: {e}", spec.image),
        }
        self.run_container(&mut container, cancel)
    }

    /// Start, wait, read the exit status.
    fn run_container(
        &self,
        container: &mut TaskContainer<'_>,
        cancel: &CancelToken,
    ) -> TaskOutcome {
        let slot = AbortSlot::new();
        let hook_slot = slot.clone();
        let hook = cancel.on_cancel(move |_| hook_slot.abort());
        if let Err(e) = self.docker.start(&container.id) {
            let detail = format!("failed to start container: {e}");
            return TaskOutcome::failed(FailureReason::ContainerStart, detail);
        }
        log::info!("started container {}", container.id);
        let waited = self.docker.wait(&container.id, &slot);
        drop(hook);
        let status = match waited {
            Ok(result) => {
                if let Some(error) = result.error {
                    log::warn!("waiting for container {}: {error}", container.id);
                }
                result.status_code
            }
            Err(_) if cancel.is_cancelled() => {
                self.stop(container);
                return TaskOutcome::failed(FailureReason::ContainerWait, "cancelled");
            }
            Err(e) => match self.docker.inspect(&container.id) {
                Ok(state) if !state.running && state.status != "created" => state.exit_code,
                _ => {
                    let detail = format!("error waiting for container: {e}");
                    return TaskOutcome::failed(FailureReason::ContainerWait, detail);
                }
            },
        };
        self.log_tail(&container.id, status);
        if status == 0 {
            log::info!("container {} exited 0", container.id);
            return TaskOutcome::Completed;
        }
        if cancel.is_cancelled() {
            // Ended by our cancel (e.g. SIGTERM during shutdown): no copy to keep.
            container.keep = false;
        }
        let oom = match self.docker.inspect(&container.id) {
            Ok(state) => state.oom_killed,
            Err(e) => {
                log::warn!("inspecting container {}: {e}", container.id);
                false
            }
        };
        let reason = if oom {
            FailureReason::ContainerOom
        } else {
            FailureReason::ContainerExit
        };
        TaskOutcome::Failed {
            reason,
            detail: format!("container exited with non-zero status: {status}"),
            exit_code: status,
        }
    }

    /// SIGTERM, the grace, SIGKILL; the container is then removed whatever `cleanup` says.
    fn stop(&self, container: &mut TaskContainer<'_>) {
        log::info!("stopping container {}", container.id);
        match self.docker.stop(&container.id, self.settings.stop_grace) {
            Ok(()) | Err(DockerError::Api { status: 404, .. }) => {}
            Err(e) => log::warn!("stopping container {}: {e}", container.id),
        }
        container.keep = false;
    }

    fn log_tail(&self, id: &str, status: i64) {
        let level = if status == 0 {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if !log::log_enabled!(level) {
            return;
        }
        match self.docker.logs_tail(id, LOG_TAIL_LINES, LOG_TAIL_BYTES) {
            Ok(out) if !out.is_empty() => log::log!(level, "container output:\n{out}"),
            Ok(_) => {}
            Err(e) => log::warn!("reading the output of container {id}: {e}"),
        }
    }
}

impl TaskRunner for DockerRunner {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        lock(&self.active).insert(task.task_id.clone());
        let outcome = self.execute(task, cancel);
        lock(&self.active).remove(&task.task_id);
        match (outcome, cancel.cause()) {
            (TaskOutcome::Completed, _) => TaskOutcome::Completed,
            (_, Some(cause)) => TaskOutcome::Cancelled(cause),
            (other, None) => other,
        }
    }
}

/// The task container; removed (forced, with its anonymous volumes) when
/// dropped unless `keep`.
struct TaskContainer<'a> {
    docker: &'a Docker,
    id: String,
    keep: bool,
}

impl Drop for TaskContainer<'_> {
    fn drop(&mut self) {
        if self.keep {
            log::info!("keeping container {} (cleanup is off)", self.id);
            return;
        }
        match self.docker.remove(&self.id) {
            Ok(()) => {}
            Err(e) if daemon_unreachable(&e) => {
                log::warn!(
                    "removing container {}: {e}; retrying in the background until the daemon answers",
                    self.id
                );
                remove_when_back(self.docker.clone(), self.id.clone());
            }
            Err(e) => log::warn!("removing container {}: {e}", self.id),
        }
    }
}

/// How often a removal is retried while the daemon is away.
const REMOVE_RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long a removal is retried before the periodic reaper is left to it.
const REMOVE_RETRY_FOR: Duration = Duration::from_secs(600);

/// The call never got an answer: the daemon is down or restarting.
fn daemon_unreachable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::NoDaemon { .. }
            | DockerError::Connect { .. }
            | DockerError::Io { .. }
            | DockerError::Timeout { .. }
    )
}

/// A daemon restart (live-restore off) leaves the stopped task container
/// behind; remove it as soon as the daemon answers again, off the task
/// thread so the task's end is reported at once.
fn remove_when_back(docker: Docker, id: String) {
    let shown = id.clone();
    let spawned = std::thread::Builder::new()
        .name("remove-later".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + REMOVE_RETRY_FOR;
            while std::time::Instant::now() < deadline {
                // No event announces the daemon's return; asking is the only way.
                std::thread::sleep(REMOVE_RETRY_EVERY);
                match docker.remove(&id) {
                    Ok(()) => {
                        log::info!("removed container {id} once the Docker daemon answered again");
                        return;
                    }
                    Err(e) if daemon_unreachable(&e) => {}
                    Err(e) => {
                        log::warn!("removing container {id}: {e}");
                        return;
                    }
                }
            }
            log::warn!(
                "container {id} is left for the reaper: the Docker daemon did not come back"
            );
        });
    if let Err(e) = spawned {
        log::warn!("container {shown} is left for the reaper: cannot start a thread: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
