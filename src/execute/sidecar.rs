//! Sidecar volumes (`shared/spec/TASK.md` §3, ENGINE.md "Filling a volume"):
//! each sidecar image's filesystem copied once into a named volume, reused
//! by every later task.
//!
//! Owns [`SidecarVolumes`]: the process-wide record of volumes known to be
//! complete (each with the volume's identity, its creation time and a random
//! fill id label, so a volume replaced behind the worker's back is checked
//! again), the single-flight of fills (two tasks needing the same new volume
//! copy it once), the fill itself (export → archive, streamed, then the
//! completeness marker), the check of an existing volume, and what to do
//! with one another program made (see [`SidecarVolumes::ensure`]). Across
//! worker processes on one daemon the first creator of a volume fills it
//! (the daemon keeps the first creator's labels) and the others wait for its
//! marker; a volume is reused only for the image it records being filled
//! from. It must not pull images (the caller passes a prepared one) nor
//! touch task containers. A fill that fails or is cancelled leaves no volume
//! and no helper container behind.
//!
//! Shared volumes are only ever mounted read-only into task containers: a
//! task that asks for a sidecar `read_write` gets its own copy, so no task
//! can change what another runs, nor write the completeness marker.
//!
//! A volume's life, and the file that owns each step:
//!
//! 1. A task asks for an image's volume ([`SidecarVolumes::ensure`], in
//!    `resolve`): one task at a time per volume; a volume this process
//!    verified is trusted after one inspect.
//! 2. Otherwise the volume on the daemon is judged (`resolve`): complete
//!    and ours → reused; being filled by another worker process → waited
//!    for; incomplete, from another image or another program's → removed
//!    and filled again, or, while a container uses it, replaced by the
//!    worker's own copy under an alternate name.
//! 3. A fill (`fill`): create the volume, stream the image's export into
//!    it through two never-started helper containers, marker last.
//! 4. What this process knows meanwhile (`record`): volumes verified
//!    complete and their identities, volumes busy or suspect, shared
//!    volumes under a running task's overlay, whether overlays mount.
//! 5. A task's private copy of a `read_write` sidecar: [`task_copy`].

mod fill;
mod record;
mod resolve;
pub mod task_copy;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::names::LABEL_SIDECAR_IMAGE;
use crate::container_spec::LABEL_MANAGED;
use crate::docker::{Docker, DockerError, VolumeInfo};

use record::State;
use resolve::FILL_ATTEMPTS;

/// Why a sidecar volume could not be prepared.
#[derive(Debug)]
pub enum SidecarError {
    /// The image has neither a digest nor an id to name the volume after.
    NoDigest {
        /// The sidecar image.
        image: String,
    },
    /// A Docker call failed while checking or filling the volume.
    Docker {
        /// The volume.
        volume: String,
        /// What the worker was doing, e.g. `copying image … into it`.
        step: &'static str,
        /// The daemon's error.
        source: DockerError,
    },
    /// The task was cancelled while waiting for or doing the copy.
    Cancelled,
    /// Other worker processes kept starting the volume's first copy and
    /// never finished it.
    Contended {
        /// The volume.
        volume: String,
    },
}

impl fmt::Display for SidecarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigest { image } => {
                write!(
                    f,
                    "sidecar image {} has no digest or id to name its volume",
                    crate::untrusted::Escaped(image)
                )
            }
            Self::Docker {
                volume,
                step,
                source,
            } => write!(
                f,
                "preparing sidecar volume {}: {step}: {source}",
                crate::untrusted::Escaped(volume)
            ),
            Self::Cancelled => f.write_str("cancelled while preparing a sidecar volume"),
            Self::Contended { volume } => write!(
                f,
                "preparing sidecar volume {}: other worker processes kept starting its copy and never finished it ({FILL_ATTEMPTS} tries)",
                crate::untrusted::Escaped(volume)
            ),
        }
    }
}

impl std::error::Error for SidecarError {}

/// The worker's sidecar volumes. One per runner, shared by all its tasks.
pub struct SidecarVolumes {
    docker: Docker,
    worker_id: String,
    instance: String,
    state: Mutex<State>,
    changed: Condvar,
    fills: AtomicUsize,
    observer: Mutex<Option<FillObserver>>,
}

/// Called on the task thread when a copy starts streaming (tests, metrics).
pub type FillObserver = Arc<dyn Fn(&str) + Send + Sync>;

impl SidecarVolumes {
    /// Volumes made on `docker`, labelled with `worker_id`; helper
    /// containers also name `instance`, so another live process leaves them be.
    pub fn new(docker: Docker, worker_id: String, instance: String) -> Arc<Self> {
        Arc::new(Self {
            docker,
            worker_id,
            instance,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            fills: AtomicUsize::new(0),
            observer: Mutex::new(None),
        })
    }

    /// How many copies this process has started (each costs two helper containers).
    pub fn fills_started(&self) -> usize {
        self.fills.load(Ordering::SeqCst)
    }

    /// Calls `observer` with the volume name whenever a copy starts streaming.
    pub fn set_fill_observer(&self, observer: Option<FillObserver>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }
}

/// Made by this worker (any worker id: the scheme is the same) as a shared
/// sidecar volume; anything else is another program's.
fn is_ours(info: &VolumeInfo) -> bool {
    info.labels.get(LABEL_MANAGED).is_some_and(|v| v == "true")
        && info.labels.contains_key(LABEL_SIDECAR_IMAGE)
}

fn docker_err(volume: &str, step: &'static str, source: DockerError) -> SidecarError {
    SidecarError::Docker {
        volume: volume.to_owned(),
        step,
        source,
    }
}
