//! Prefetch (`backend.docker.prefetch_images`, `default_image`,
//! `sidecar_image`): at start, on a thread of its own, makes the images
//! every task needs warm — pulled exactly as tasks pull them (pull policy,
//! mirrors, credentials) and, for the configured sidecar image, its shared
//! volume filled — while the worker connects and claims. A task that needs
//! an image being prefetched waits for that pull ([`super::image::PullGate`])
//! and for a sidecar volume being filled (the single flight in
//! [`super::sidecar`]) instead of starting a second. A failure is one WARN
//! naming the image, never fatal.
//!
//! Owns the list of what to warm ([`targets`]) and the record of how far it
//! got ([`Warmth`], for metrics). It must not decide anything about tasks,
//! nor pull in any other way than tasks do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{DEFAULT_IMAGE, DockerConfig};
use crate::task::CancelToken;

use super::{DockerRunner, image};

/// One image to warm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The image as configured.
    pub image: String,
    /// It is the agent sidecar: its volume is filled too.
    pub sidecar: bool,
}

/// What to warm, in order: the sidecar image (every task needs it), the
/// default image, then `prefetch_images`; each image once. The built-in
/// default image (`ubuntu:22.04` from Docker Hub) is warmed only when
/// listed: an air-gapped host cannot reach it, and a worker whose tasks all
/// name their image never needs it.
pub fn targets(docker: &DockerConfig) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut add = |image: &str, sidecar: bool| {
        if !image.is_empty() && !out.iter().any(|t| t.image == image) {
            out.push(Target {
                image: image.to_owned(),
                sidecar,
            });
        }
    };
    if let Some(sidecar) = &docker.sidecar_image {
        add(sidecar, true);
    }
    if docker.default_image != DEFAULT_IMAGE {
        add(&docker.default_image, false);
    }
    for image in &docker.prefetch_images {
        add(image, false);
    }
    out
}

/// How far one image got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not tried yet, or being pulled / filled.
    Pending,
    /// Present (and its volume filled, for the sidecar).
    Warm,
    /// Could not be made warm; tasks that need it pull it themselves.
    Failed,
}

impl State {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Warm => "warm",
            Self::Failed => "failed",
        }
    }
}

/// The prefetch's progress, image by image (shared with metrics).
#[derive(Debug, Clone, Default)]
pub struct Warmth(Arc<Mutex<BTreeMap<String, State>>>);

impl Warmth {
    fn set(&self, image: &str, state: State) {
        self.lock().insert(image.to_owned(), state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, State>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each image's state.
    pub fn states(&self) -> BTreeMap<String, State> {
        self.lock().clone()
    }

    /// How many images are in `state`.
    pub fn count(&self, state: State) -> usize {
        self.lock().values().filter(|s| **s == state).count()
    }

    /// The counts by state for metrics; empty when there is nothing to warm.
    pub fn gauge(&self) -> Vec<(&'static str, u64)> {
        if self.lock().is_empty() {
            return Vec::new();
        }
        [State::Pending, State::Warm, State::Failed]
            .iter()
            .map(|s| (s.as_str(), self.count(*s) as u64))
            .collect()
    }
}

/// The prefetch thread; dropping the handle cancels what is left of it.
pub struct PrefetchHandle {
    stop: CancelToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PrefetchHandle {
    /// Waits until every target was tried (tests).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PrefetchHandle {
    fn drop(&mut self) {
        self.stop.cancel(crate::task::CancelCause::Shutdown);
    }
}

/// Starts warming `targets` on `runner` in the background; progress goes to
/// `warmth`.
pub fn spawn(runner: Arc<DockerRunner>, targets: Vec<Target>, warmth: Warmth) -> PrefetchHandle {
    let stop = CancelToken::new();
    for t in &targets {
        warmth.set(&t.image, State::Pending);
    }
    let token = stop.clone();
    let thread = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || run(&runner, &targets, &warmth, &token))
        .map_err(|e| log::warn!("prefetch: could not start its thread: {e}; images are pulled by the tasks that need them"))
        .ok();
    PrefetchHandle { stop, thread }
}

fn run(runner: &DockerRunner, targets: &[Target], warmth: &Warmth, stop: &CancelToken) {
    if targets.is_empty() {
        return;
    }
    let started = Instant::now();
    for target in targets {
        if stop.is_cancelled() {
            return;
        }
        let state = match warm(runner, target, stop) {
            Ok(()) => State::Warm,
            Err(_) if stop.is_cancelled() => return,
            Err(e) => {
                log::warn!(
                    "prefetch: {} could not be made ready: {e}; tasks that need it will pull it themselves",
                    target.image
                );
                State::Failed
            }
        };
        warmth.set(&target.image, state);
    }
    log::info!(
        "prefetch: {} of {} image(s) ready in {}",
        warmth.count(State::Warm),
        targets.len(),
        crate::duration::format(started.elapsed())
    );
}

/// Pulls `target` as a task would, then fills its volume if it is the sidecar.
fn warm(runner: &DockerRunner, target: &Target, stop: &CancelToken) -> Result<(), String> {
    let r = runner;
    let prepared = image::ensure(&r.docker, &r.settings.images, &r.pulls, &target.image, stop)
        .map_err(|e| e.to_string())?;
    if target.sidecar {
        let volume = r
            .volumes
            .ensure(
                &target.image,
                &prepared.reference,
                &prepared.info.repo_digests,
                &prepared.info.id,
                stop,
            )
            .map_err(|e| e.to_string())?;
        log::info!(
            "prefetch: sidecar image {} is ready in volume {volume}",
            target.image
        );
    } else {
        log::info!("prefetch: image {} is ready", target.image);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sidecar: Option<&str>, default: &str, prefetch: &[&str]) -> DockerConfig {
        DockerConfig {
            sidecar_image: sidecar.map(str::to_owned),
            default_image: default.to_owned(),
            prefetch_images: prefetch.iter().map(|s| (*s).to_owned()).collect(),
            ..DockerConfig::default()
        }
    }

    fn t(image: &str, sidecar: bool) -> Target {
        Target {
            image: image.into(),
            sidecar,
        }
    }

    #[test]
    fn the_sidecar_first_then_the_default_then_the_list_each_once() {
        assert_eq!(
            targets(&config(
                Some("reg/agent:1"),
                "reg/base:2",
                &["node:20", "reg/base:2", "reg/agent:1", "node:20"]
            )),
            vec![
                t("reg/agent:1", true),
                t("reg/base:2", false),
                t("node:20", false)
            ]
        );
        // The built-in default only when listed.
        assert_eq!(targets(&config(None, DEFAULT_IMAGE, &[])), vec![]);
        assert_eq!(
            targets(&config(None, DEFAULT_IMAGE, &[DEFAULT_IMAGE])),
            vec![t(DEFAULT_IMAGE, false)]
        );
    }
}
