//! What only an assigned task does (the [`TaskWork`] of the protocol):
//! pull its images, prepare its sidecar volumes, create its container
//! under the execution's own name, and check it before it starts (the
//! musl probe). The ownership machine decides when; this module only does.
//!
//! Owns [`AssignedWork`]; it must not start, stop or remove containers.

use std::sync::Arc;
use std::time::SystemTime;

use super::drive::{CreateFailure, TaskWork, no_answer};
use super::names;
use super::sidecar::task_copy::{TaskRef, TaskVolumes};
use super::{DockerRunner, image};
use crate::container_spec::{self, ContainerSpec};
use crate::docker::DockerError;
use crate::task::{CancelToken, TaskOutcome};
use crate::telemetry::{self, AttrValue};
use crate::untrusted::Escaped;
use crate::wire::{FailureReason, TaskAssignment};

/// One assigned task's own steps.
pub(super) struct AssignedWork<'a> {
    runner: &'a DockerRunner,
    task: &'a TaskAssignment,
    spec: ContainerSpec<'a>,
    key: String,
    /// When the task times out (local clock), if it has a limit.
    deadline: Option<SystemTime>,
    image: Option<image::PreparedImage>,
    /// The sidecar volumes the container mounts.
    pub sidecar_volumes: Vec<String>,
    /// A `read_write` sidecar's own volumes; the container takes them over.
    pub task_volumes: TaskVolumes,
    /// Why the task failed, for its terminal message.
    pub failure: Option<TaskOutcome>,
    /// The container's run, from its start (a trace span).
    pub run_span: Option<Phase>,
}

impl<'a> AssignedWork<'a> {
    /// The work of `task` (its `spec` built) on `runner`, execution `key`.
    pub fn new(
        runner: &'a DockerRunner,
        task: &'a TaskAssignment,
        spec: ContainerSpec<'a>,
        key: &str,
        cancel: &CancelToken,
    ) -> Self {
        Self {
            runner,
            task,
            spec,
            key: key.to_owned(),
            deadline: cancel.deadline(),
            image: None,
            sidecar_volumes: Vec::new(),
            task_volumes: TaskVolumes::new(Arc::clone(&runner.volumes)),
            failure: None,
            run_span: None,
        }
    }
}

impl TaskWork for AssignedWork<'_> {
    fn prepare(&mut self, cancel: &CancelToken) -> Result<(), TaskOutcome> {
        let r = self.runner;
        let image = image::ensure(
            &r.docker,
            &r.settings.images,
            &r.pulls,
            &self.spec.image,
            cancel,
        )
        .map_err(|e| TaskOutcome::failed(FailureReason::ImagePull, e.to_string()))?;
        r.retention.image_used(&image);
        self.image = Some(image);
        for sidecar in &self.spec.sidecars {
            if cancel.is_cancelled() {
                return Err(TaskOutcome::failed(FailureReason::SidecarPrep, "cancelled"));
            }
            // Ends when this iteration does; marked ok only at its end.
            let mut span = Phase(telemetry::phase(
                "oz_worker.sidecar_prep",
                vec![
                    ("sidecar.image", AttrValue::Str(sidecar.image.clone())),
                    (
                        "sidecar.mount_path",
                        AttrValue::Str(sidecar.mount_path.clone()),
                    ),
                ],
            ));
            let prepared = image::ensure(
                &r.docker,
                &r.settings.images,
                &r.pulls,
                &sidecar.image,
                cancel,
            )
            .map_err(|e| {
                let detail = format!("sidecar {}: {e}", sidecar.mount_path);
                span.fail(TaskOutcome::failed(FailureReason::SidecarPrep, detail))
            })?;
            let shared = r.volumes.ensure(
                &sidecar.image,
                &prepared.reference,
                &prepared.info.repo_digests,
                &prepared.info.id,
                cancel,
            );
            if let Ok(shared) = &shared {
                r.retention.sidecar_used(shared);
            }
            let volume = match shared {
                Ok(shared) if !sidecar.read_only => {
                    // A shared volume is never mounted writable: this task gets its own.
                    let owner = TaskRef {
                        task_id: &self.task.task_id,
                        execution_id: &self.task.execution_id,
                    };
                    let reference = &prepared.reference;
                    (r.volumes).task_copy(&shared, reference, owner, &mut self.task_volumes, cancel)
                }
                other => other,
            };
            match volume {
                Ok(v) => self.sidecar_volumes.push(v),
                Err(e) => {
                    return Err(span.fail(TaskOutcome::failed(
                        FailureReason::SidecarPrep,
                        e.to_string(),
                    )));
                }
            }
            span.ok();
        }
        Ok(())
    }

    fn create(&mut self) -> Result<String, CreateFailure> {
        let r = self.runner;
        let Some(image) = &self.image else {
            return Err(CreateFailure::Failed(TaskOutcome::failed(
                FailureReason::ContainerCreate,
                "no image was prepared",
            )));
        };
        if let Some(limits) = r.settings.limits_override {
            self.spec.limits = limits;
        }
        let mut body =
            container_spec::create_body(&self.spec, &image.reference, &self.sidecar_volumes);
        let deadline = self.deadline.map(|t| r.clock.to_daemon(t));
        let keep = !r.settings.cleanup;
        let mut labels = names::lifecycle_labels(&r.settings.instance, deadline, keep);
        labels.insert(names::LABEL_EXEC_KEY.to_owned(), self.key.clone());
        for (key, value) in labels {
            body["Labels"][key] = value.into();
        }
        // Every label the worker reads is the worker's: empty where it has
        // no value, so the image's labels cannot set it.
        for key in names::CONTAINER_LABELS {
            if body["Labels"].get(key).is_none() {
                body["Labels"][key] = "".into();
            }
        }
        let name = names::container_name(&self.task.task_id, &self.task.execution_id, &self.key);
        match r.logs.create(&r.docker, &name, &mut body) {
            Ok(id) => {
                log::debug!("created container {name} ({id})");
                Ok(id)
            }
            Err(DockerError::Api { status: 409, .. }) => Err(CreateFailure::NameTaken),
            Err(e) if no_answer(&e) => Err(CreateFailure::Unreachable),
            Err(e) => Err(CreateFailure::Failed(TaskOutcome::failed(
                FailureReason::ContainerCreate,
                format!("failed to create container: {e}"),
            ))),
        }
    }

    fn check(&mut self, id: &str) -> Result<(), TaskOutcome> {
        // The musl probe runs on the real task container (created, not
        // started) after the sidecars because its body names their volumes,
        // and a bind to a missing volume would make Docker create it empty.
        let r = self.runner;
        let loader = names::musl_loader(&r.settings.images.platform);
        match r.docker.head_archive(id, loader) {
            Ok(true) => Err(TaskOutcome::failed(
                FailureReason::ImagePull,
                format!(
                    "image {} uses musl libc (for example Alpine Linux); the Warp agent needs a glibc-based image such as Debian or Ubuntu",
                    Escaped(&self.spec.image)
                ),
            )),
            Ok(false) => Ok(()),
            Err(e) => {
                log::warn!(
                    "could not check image {} for musl libc: {e}",
                    Escaped(&self.spec.image)
                );
                Ok(())
            }
        }
    }

    fn fail(&mut self, outcome: TaskOutcome) {
        self.failure.get_or_insert(outcome);
    }

    fn started(&mut self, id: &str) {
        self.run_span = Some(Phase(telemetry::phase(
            "oz_worker.container_run",
            vec![("container.id", AttrValue::Str(id.to_owned()))],
        )));
    }
}

/// A step's child span (when traces are on), failed with the outcome's words.
pub(super) struct Phase(pub Option<telemetry::ChildSpan>);

impl Phase {
    /// Marks the span ok.
    pub fn ok(&mut self) {
        if let Some(s) = &mut self.0 {
            s.ok();
        }
    }

    /// Marks the span failed with `outcome`'s reason, and returns it.
    pub fn fail(&mut self, outcome: TaskOutcome) -> TaskOutcome {
        if let (
            Some(s),
            TaskOutcome::Failed {
                reason, exit_code, ..
            },
        ) = (&mut self.0, &outcome)
        {
            s.error(reason.as_str());
            if *exit_code != 0 {
                s.attribute("container.exit_code", AttrValue::Int(*exit_code));
            }
        }
        outcome
    }
}
