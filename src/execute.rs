//! The Docker task runner: one task assignment, run to its end in a real
//! container (`shared/spec/TASK.md` end to end).
//!
//! Owns [`DockerRunner`] (the flow: spec → image → sidecar volumes → create
//! → musl probe → start → wait → exit status → logs): [`DockerRunner`]'s
//! `execute` runs one assignment as its phases (spec, the driven state
//! machine in `assigned` and [`drive`], then the end in `report`, which maps
//! the last step to the outcome and its `failure_reason`). Image pulls live
//! in [`image`], sidecar volumes in [`sidecar`] (a `read_write` sidecar's
//! private volume in [`sidecar::task_copy`]), host log limits in
//! [`logconf`], what happens to an ended task's container in [`cleanup`], containers started by an earlier worker process in
//! `follow` (with [`ownership`], [`claims`] and [`lease`] for who may take
//! them over), leftovers in [`reaper`], pure names in [`names`]. Cancel hooks
//! registered here only abort in-flight I/O; stopping happens on the task's
//! own thread. A detach (the worker stops, the task goes on) leaves a started
//! container running and labelled for the next process to adopt.

mod assigned;
pub mod claims;
pub mod cleanup;
pub mod disk;
pub mod drive;
mod follow;
pub mod image;
pub mod lease;
pub mod logconf;
pub mod names;
pub mod ownership;
pub mod prefetch;
pub mod progress;
pub mod reaper;
mod report;
pub mod retention;
pub mod sidecar;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, ContainerLogs};
use crate::container_spec::{self, Limits, SpecInputs};
use crate::docker::Docker;
use crate::docker::auth::CredentialEnv;
use crate::logging;
use crate::task::{CancelToken, TaskOutcome, TaskRunner};
use crate::untrusted::Escaped;
use crate::wire::TaskAssignment;

pub use image::{ImageError, ImageSettings, PULL_STALL_TIMEOUT, PreparedImage, PullGate};
pub use sidecar::{SidecarError, SidecarVolumes};

use assigned::AssignedWork;
use cleanup::Cleanups;
use drive::{Executor, TaskIds};
use lease::{DaemonClock, Ownership};
use ownership::machine::{Origin, Step, TaskMachine};
use report::{close_run_span, settle};

/// What every logged line of container output starts with.
pub const CONTAINER_LINE: &str = "[container] ";

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
    /// This worker process's instance id, labelled on what it creates.
    pub instance: String,
    /// Keep an ended task's container until the orchestrator has read its
    /// terminal message ([`TaskRunner::delivered`]), so a crash in between
    /// loses nothing; false removes it at once (a runner driven without a
    /// dispatcher, as in tests).
    pub remove_after_delivery: bool,
    /// Bounds on container logs on the host.
    pub container_logs: ContainerLogs,
    /// How long this process's lease lasts after its last renewal.
    pub lease_ttl: Duration,
}

impl RunnerSettings {
    /// Settings from a validated configuration; `platform` is the daemon's
    /// `os/arch`, `instance` this process's instance id.
    pub fn from_config(cfg: &Config, platform: String, instance: String) -> Self {
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
            instance,
            remove_after_delivery: true,
            container_logs: cfg.docker.container_logs,
            lease_ttl: cfg.upkeep.lease_ttl,
        }
    }
}

/// Runs tasks in Docker containers. Share one per worker (its sidecar volume
/// record, active-task set and ownership state are process-wide).
pub struct DockerRunner {
    docker: Docker,
    settings: RunnerSettings,
    volumes: Arc<SidecarVolumes>,
    /// One pull of an image at a time (tasks and the prefetch share it).
    pulls: Arc<image::PullGate>,
    /// Whether Docker's disk was found full (tasks fail on it meanwhile).
    disk: Arc<disk::DiskSpace>,
    active: Arc<Mutex<HashSet<String>>>,
    /// Execution keys this process runs, follows or adopts now.
    keys: Mutex<HashSet<String>>,
    /// Tasks this process holds now (see `TaskMachine::holds`).
    held: Mutex<HashSet<String>>,
    clock: Arc<DaemonClock>,
    executor: Executor,
    cleanups: Arc<Cleanups>,
    logs: logconf::HostLogs,
    retention: retention::Retention,
}

impl DockerRunner {
    /// A runner on `docker` with `settings`.
    pub fn new(docker: Docker, settings: RunnerSettings) -> Self {
        let worker_id = settings.spec.worker_id.clone();
        let volumes =
            SidecarVolumes::new(docker.clone(), worker_id.clone(), settings.instance.clone());
        let ownership = Ownership::new(
            docker.clone(),
            &worker_id,
            &settings.instance,
            settings.lease_ttl,
        );
        let executor = Executor::new(docker.clone(), ownership, settings.stop_grace);
        let cleanups = Arc::new(Cleanups::new(
            executor.clone(),
            settings.remove_after_delivery,
        ));
        let logs = logconf::HostLogs::new(settings.container_logs);
        let retention = retention::Retention::new(docker.clone(), worker_id.clone());
        Self {
            docker,
            settings,
            volumes,
            pulls: Arc::default(),
            disk: Arc::default(),
            active: Arc::default(),
            keys: Mutex::default(),
            held: Mutex::default(),
            clock: DaemonClock::new(),
            executor,
            cleanups,
            logs,
            retention,
        }
    }

    /// Sets how long unused sidecar volumes and images are kept (off until
    /// called: a runner made without a configuration removes nothing).
    pub fn set_retention(&self, settings: retention::RetentionSettings) {
        self.retention.set(settings);
    }

    /// Runs a retention pass now (see [`retention::retention_pass`]): for
    /// whoever needs disk space back, e.g. when the disk is full.
    pub fn retention_pass(&self) -> Result<retention::RetentionReport, retention::RetentionError> {
        retention::retention_pass(self)
    }

    /// This process's ownership state (its lease is [`lease::acquire`]d on it).
    pub fn ownership(&self) -> &Arc<Ownership> {
        self.executor.ownership()
    }

    /// One pull of an image at a time: tasks and the prefetch share it.
    pub fn pulls(&self) -> &Arc<PullGate> {
        &self.pulls
    }

    /// Whether Docker's disk was found full by a task.
    pub fn disk(&self) -> &Arc<disk::DiskSpace> {
        &self.disk
    }

    /// Whether Docker can write again (see [`disk::probe`]).
    pub fn probe_disk(&self) -> disk::Probe {
        disk::probe(
            &self.docker,
            &self.settings.spec.worker_id,
            &self.settings.instance,
        )
    }

    /// The sidecar volumes (fill count, observer; the reaper asks which are busy).
    pub fn volumes(&self) -> &Arc<SidecarVolumes> {
        &self.volumes
    }

    /// The daemon's clock as this runner knows it (the lease keeps it in sync).
    pub fn clock(&self) -> &Arc<DaemonClock> {
        &self.clock
    }

    /// This runner's settings.
    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    /// Whether `task_id` is running in this runner now, or its container
    /// waits for its terminal message to be read.
    pub fn is_active(&self, task_id: &str) -> bool {
        lock(&self.active).contains(task_id) || self.cleanups.is_waiting(task_id)
    }

    /// Starts a thread that, every `interval` (sooner when another
    /// process's lease is about to run out), reaps leftovers and hands the
    /// tasks of gone worker processes to `adopt`, sparing containers younger
    /// than `grace`. Stops when the handle is dropped.
    pub fn spawn_reaper(
        self: &Arc<Self>,
        adopt: reaper::AdoptSink,
        interval: Duration,
        grace: Duration,
    ) -> reaper::ReaperHandle {
        reaper::spawn_periodic(Arc::clone(self), adopt, interval, grace)
    }

    /// One assignment, start to end: build its container spec, drive its
    /// state machine (image, sidecars, create, start, wait), turn the last
    /// step into the outcome to report, then account for what that outcome
    /// says about the daemon (its trace span, a full disk, volumes that
    /// could not be started with).
    fn execute(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        let spec = match self.build_spec(task) {
            Ok(spec) => spec,
            Err(outcome) => return outcome,
        };
        let _secrets = self.mask_operator_env();
        let key = names::exec_key(
            &self.settings.spec.worker_id,
            &task.task_id,
            &task.execution_id,
        );
        let ids = TaskIds {
            key: &key,
            task_id: &task.task_id,
            execution_id: &task.execution_id,
        };
        let mut work = AssignedWork::new(self, task, spec, &key, cancel);
        let step = self.drive_assigned(task, &ids, &mut work, cancel);
        let volumes = work.task_volumes.hand_over();
        let failure = work.failure.take();
        let sidecars = std::mem::take(&mut work.sidecar_volumes);
        let run_span = work.run_span.take();
        let outcome = self.finish(step, &ids, failure, volumes, cancel);
        close_run_span(run_span, &outcome);
        let outcome = self.on_full_disk(outcome);
        self.on_failed_start(&outcome, &sidecars);
        outcome
    }

    /// Phase 1: the container spec of `task`, or the outcome that refuses it.
    fn build_spec<'a>(
        &'a self,
        task: &'a TaskAssignment,
    ) -> Result<container_spec::ContainerSpec<'a>, TaskOutcome> {
        let spec = container_spec::build(task, &self.settings.spec)
            .map_err(|e| TaskOutcome::failed(e.failure_reason(), e.to_string()))?;
        if let Some(env) = container_spec::environment_without_image(task) {
            log::warn!(
                "task names environment {} but no image came with it; using {}",
                Escaped(env),
                Escaped(&spec.image)
            );
        }
        Ok(spec)
    }

    /// Masks the operator's environment values in every log line while the
    /// returned guards live. The dispatcher masks `env_vars`; the operator's
    /// values are secrets too.
    fn mask_operator_env(&self) -> Vec<logging::SecretGuard> {
        self.settings
            .spec
            .operator_env
            .values()
            .map(|v| logging::register_secret(v))
            .collect()
    }

    /// Phase 2: the assigned execution's state machine, driven until it
    /// reports, goes silent or hands its container to cleanup. The execution
    /// is busy (the reaper leaves it alone) from here until [`Self::finish`]
    /// hands it on.
    fn drive_assigned(
        &self,
        task: &TaskAssignment,
        ids: &TaskIds<'_>,
        work: &mut AssignedWork<'_>,
        cancel: &CancelToken,
    ) -> Step {
        let dedupe = !task.execution_id.is_empty();
        let mut machine = TaskMachine::new(Origin::Assigned { dedupe }, ids.key);
        self.busy(ids.key, true);
        self.executor.drive(&mut machine, ids, work, cancel, &|f| {
            self.holding(&task.task_id, f)
        })
    }

    /// Marks execution `key` as handled by this process (the reaper leaves
    /// it alone) or not.
    fn busy(&self, key: &str, on: bool) {
        let mut keys = lock(&self.keys);
        if on {
            keys.insert(key.to_owned());
        } else {
            keys.remove(key);
        }
    }

    /// Records whether this process holds task `task_id` now.
    fn holding(&self, task_id: &str, on: bool) {
        let mut f = lock(&self.held);
        if on {
            f.insert(task_id.to_owned());
        } else {
            f.remove(task_id);
        }
    }

    /// Whether this process runs, follows or cleans up execution `key`.
    pub fn is_busy(&self, key: &str) -> bool {
        lock(&self.keys).contains(key) || self.cleanups.is_busy(key)
    }

    /// Runs `work` as task `task_id` of this runner: marked active while it
    /// runs, its outcome settled against why it was cancelled.
    fn as_active(
        &self,
        task_id: &str,
        cancel: &CancelToken,
        work: impl FnOnce() -> TaskOutcome,
    ) -> TaskOutcome {
        lock(&self.active).insert(task_id.to_owned());
        let outcome = work();
        lock(&self.active).remove(task_id);
        lock(&self.held).remove(task_id);
        self.cleanups.forget_delivery(task_id);
        settle(outcome, cancel.cause())
    }
}

impl TaskRunner for DockerRunner {
    fn run(&self, task: &TaskAssignment, cancel: &CancelToken) -> TaskOutcome {
        self.as_active(&task.task_id, cancel, || self.execute(task, cancel))
    }

    fn delivered(&self, task_id: &str) {
        let running = lock(&self.active).contains(task_id);
        self.cleanups.delivered(task_id, running);
    }

    fn settle(&self, until: Instant) {
        self.cleanups.settle(until);
    }

    fn reports(&self, task_id: &str) -> bool {
        lock(&self.held).contains(task_id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
