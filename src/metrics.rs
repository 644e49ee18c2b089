//! Prometheus metrics and health endpoints.
//!
//! Owns the worker's metric values ([`Metrics`]), their text rendering
//! ([`render`]), the health facts behind `/healthz` and `/readyz`
//! ([`health`]), the OpenTelemetry environment variables that switch the
//! endpoint on ([`env`]), and the HTTP server itself ([`server`]).
//!
//! Names, types, labels and buckets are those a Go worker's scrape shows
//! (its OpenTelemetry Prometheus exporter adds `otel_scope_*` labels to every
//! series and a `target_info` family), so dashboards built for it keep
//! working. This module records what it is told; it must not reach into the
//! connection, the dispatcher or Docker.

pub mod env;
mod families;
pub mod health;
pub mod labels;
pub mod render;
pub mod resource;
pub mod server;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::events::{DispatchObserver, RejectReason};
use crate::wire::Outbound;

pub use env::{EnvError, ListenAddr, config_from_env};
pub use health::{Health, NotReady};
pub use labels::{ReconnectReason, TaskResult};
pub use resource::Resource;
pub use server::{ServerHandle, serve};
pub use snapshot::{Family, HistogramValue, Instrument, Point, Snapshot, Value};

use labels::{FAILURE_PHASES, FAILURE_REASONS, PHASE_BACKEND, RECONNECT_REASONS};

/// Upper bounds of every duration histogram: the OpenTelemetry SDK's
/// default explicit buckets, which the Go worker keeps.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// The instrumentation scope the Go worker's exporter puts on every series
/// (and the OTLP push names as its scope).
pub const SCOPE_NAME: &str = "github.com/warpdotdev/oz-agent-worker";

/// What `oz_worker_info` and `target_info` say about this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Build version.
    pub version: String,
    /// Backend type, e.g. `docker`.
    pub backend: String,
    /// The operator's `--worker-id`.
    pub worker_id: String,
}

/// How a pull or a sidecar copy ended, for the `result` label of its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkResult {
    /// It finished.
    Succeeded,
    /// It failed or was cancelled.
    Failed,
}

impl WorkResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Reads a gauge that lives elsewhere (the outbox) at each reading.
pub type GaugeSource = Arc<dyn Fn() -> usize + Send + Sync>;

/// Reads a labelled gauge at scrape time: (label value, value) pairs.
pub type LabelledSource = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// The worker's metrics; cheap to clone, shared by every thread that records.
#[derive(Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct State {
    info: WorkerInfo,
    resource: Resource,
    start: SystemTime,
    connected: bool,
    docker_up: bool,
    active: usize,
    max_concurrent: usize,
    claimed: u64,
    adopted: u64,
    rejected: BTreeMap<&'static str, u64>,
    completed: BTreeMap<&'static str, u64>,
    durations: BTreeMap<&'static str, Histogram>,
    failures: BTreeMap<(&'static str, &'static str), u64>,
    reconnects: BTreeMap<&'static str, u64>,
    pull_durations: BTreeMap<&'static str, Histogram>,
    pull_bytes: u64,
    copy_durations: BTreeMap<&'static str, Histogram>,
    copy_bytes: u64,
    /// Objects retention removed, by kind (empty until it removes one).
    retention_removed: BTreeMap<&'static str, u64>,
    retention_freed: u64,
    unacknowledged: Option<GaugeSource>,
    prefetch: Option<LabelledSource>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last is above every bound.
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    min: f64,
    max: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.iter().all(|&c| c == 0) {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        // Buckets are upper-inclusive, as in OpenTelemetry.
        let i = DURATION_BUCKETS.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
    }

    fn value(&self) -> Value {
        Value::Histogram(HistogramValue {
            bounds: &DURATION_BUCKETS,
            counts: self.counts.to_vec(),
            sum: self.sum,
            min: self.min,
            max: self.max,
        })
    }
}

impl Metrics {
    /// Every known series primed at zero, as a fresh Go worker shows them.
    /// The resource is the worker's own attributes only; see [`Metrics::with_resource`].
    pub fn new(info: WorkerInfo, max_concurrent: usize) -> Self {
        let mut failures = BTreeMap::new();
        for phase in FAILURE_PHASES {
            for reason in FAILURE_REASONS {
                failures.insert((phase, reason), 0);
            }
        }
        let (resource, _) = Resource::build(&info, crate::build_info::VERSION, &|_| None);
        let state = State {
            info,
            resource,
            start: SystemTime::now(),
            connected: false,
            docker_up: false,
            active: 0,
            max_concurrent,
            claimed: 0,
            adopted: 0,
            rejected: BTreeMap::from([(RejectReason::AtCapacity.metric_label(), 0)]),
            completed: TaskResult::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            // Unprimed on purpose, like Go: a fake 0 s sample would skew latency.
            durations: BTreeMap::new(),
            failures,
            reconnects: RECONNECT_REASONS.iter().map(|r| (*r, 0)).collect(),
            pull_durations: BTreeMap::new(),
            pull_bytes: 0,
            copy_durations: BTreeMap::new(),
            copy_bytes: 0,
            retention_removed: BTreeMap::new(),
            retention_freed: 0,
            unacknowledged: None,
            prefetch: None,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Replaces the resource (`target_info`, the OTLP resource), e.g. with
    /// one merged from `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn with_resource(self, resource: Resource) -> Self {
        self.lock().resource = resource;
        self
    }

    /// The resource.
    pub fn resource(&self) -> Resource {
        self.lock().resource.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records whether the WebSocket connection to Oz is up.
    pub fn set_connected(&self, connected: bool) {
        self.lock().connected = connected;
    }

    /// Records whether the Docker daemon answered its last ping.
    pub fn set_docker_up(&self, up: bool) {
        self.lock().docker_up = up;
    }

    /// Makes `oz_worker_prefetch_images` read `source` (images by prefetch
    /// state) at every scrape and push.
    pub fn set_prefetch_source(&self, source: LabelledSource) {
        self.lock().prefetch = Some(source);
    }

    /// Makes `oz_worker_status_messages_unacknowledged` read `source` (the
    /// outbox's length) at every scrape and push.
    pub fn set_unacknowledged_source(&self, source: GaugeSource) {
        self.lock().unacknowledged = Some(source);
    }

    /// Records a reconnect attempt.
    pub fn reconnect(&self, reason: ReconnectReason) {
        *self.lock().reconnects.entry(reason.as_str()).or_default() += 1;
    }

    /// Records the configured concurrency limit (0 = unlimited).
    pub fn set_max_concurrent(&self, n: usize) {
        self.lock().max_concurrent = n;
    }

    /// Records how many tasks are running now.
    pub fn set_active(&self, n: usize) {
        self.lock().active = n;
    }

    /// Records a claim.
    pub fn task_claimed(&self) {
        self.lock().claimed += 1;
    }

    /// Records a rejection for `reason`.
    pub fn task_rejected(&self, reason: RejectReason) {
        *self
            .lock()
            .rejected
            .entry(reason.metric_label())
            .or_default() += 1;
    }

    /// Records a task's end: its result, how long it ran, and for a failure
    /// the failure reason (counted under the `backend` phase).
    pub fn task_ended(&self, result: TaskResult, failure: Option<&'static str>, ran: Duration) {
        let mut s = self.lock();
        *s.completed.entry(result.as_str()).or_default() += 1;
        s.durations
            .entry(result.as_str())
            .or_default()
            .observe(ran.as_secs_f64());
        if let Some(reason) = failure {
            *s.failures.entry((PHASE_BACKEND, reason)).or_default() += 1;
        }
    }

    /// Records an image pull that moved `bytes` from the registry in `took`.
    pub fn image_pulled(&self, result: WorkResult, took: Duration, bytes: u64) {
        let mut s = self.lock();
        s.pull_durations
            .entry(result.as_str())
            .or_default()
            .observe(took.as_secs_f64());
        s.pull_bytes += bytes;
    }

    /// Records a sidecar image copied (`bytes` of its export) into its volume in `took`.
    pub fn sidecar_copied(&self, result: WorkResult, took: Duration, bytes: u64) {
        let mut s = self.lock();
        s.copy_durations
            .entry(result.as_str())
            .or_default()
            .observe(took.as_secs_f64());
        s.copy_bytes += bytes;
    }

    /// Records what a retention pass removed: `volumes` sidecar volumes and
    /// `images` images, holding `bytes`.
    pub fn retention_removed(&self, volumes: usize, images: usize, bytes: u64) {
        let mut s = self.lock();
        for (kind, n) in [
            (RETENTION_SIDECAR_VOLUME, volumes),
            (RETENTION_IMAGE, images),
        ] {
            *s.retention_removed.entry(kind).or_default() += n as u64;
        }
        s.retention_freed += bytes;
    }

    /// Every metric now, in name order (the scope labels and the resource
    /// are not in it; [`render`] and the OTLP push add them).
    pub fn snapshot(&self) -> Snapshot {
        let (source, prefetch) = {
            let s = self.lock();
            (s.unacknowledged.clone(), s.prefetch.clone())
        };
        // Read outside our lock: the sources take their own.
        let sourced = families::Sourced {
            unacknowledged: source.map_or(0, |f| f()),
            prefetch: prefetch.map_or_else(Vec::new, |f| f()),
        };
        let s = self.lock();
        let families = s.families(&sourced);
        Snapshot {
            start: s.start,
            at: SystemTime::now(),
            families,
        }
    }

    /// The scrape: Prometheus text format 0.0.4, families in name order.
    pub fn render(&self) -> String {
        let snapshot = self.snapshot();
        let resource = self.resource();
        render::prometheus(&snapshot, &resource)
    }
}

impl DispatchObserver for Metrics {
    fn claimed(&self) {
        self.task_claimed();
    }

    fn adopted(&self) {
        self.lock().adopted += 1;
    }

    fn rejected(&self, reason: RejectReason) {
        self.task_rejected(reason);
    }

    fn finished(&self, message: &Outbound, elapsed: Duration) {
        if let Some((result, failure)) = labels::classify(message) {
            self.task_ended(result, failure, elapsed);
        }
    }

    fn active(&self, count: usize) {
        self.set_active(count);
    }
}

const HELP_CONNECTED: &str =
    "Whether the worker's WebSocket connection to Oz is up: 1 connected, 0 not.";
const HELP_INFO: &str = "Always 1; the labels carry the worker's version, backend and id.";
const HELP_DURATION: &str = "How long tasks ran on this worker, in seconds, by result.";
const HELP_FAILURES: &str = "Task failures since the worker started, by phase and reason.";
const HELP_ACTIVE: &str = "Tasks this worker is running right now.";
const HELP_CLAIMED: &str = "Tasks this worker has claimed since it started.";
const HELP_ADOPTED: &str =
    "Tasks left running by an earlier worker process that this one took over since it started.";
const HELP_COMPLETED: &str = "Tasks that ended on this worker since it started, by result.";
const HELP_MAX_CONCURRENT: &str =
    "The configured limit on tasks running at once; 0 means no limit.";
const HELP_REJECTED: &str = "Tasks this worker has rejected since it started, by reason.";
const HELP_RECONNECTS: &str = "WebSocket reconnect attempts since the worker started, by reason.";
/// HELP of `promhttp_metric_handler_errors_total` (scrape only).
pub const HELP_HANDLER_ERRORS: &str =
    "Errors the metrics endpoint hit while gathering or encoding a scrape.";
const HELP_PREFETCH: &str = "Images the worker makes ready at start (prefetch_images, the configured default and sidecar images), by state: pending, warm, failed.";
const HELP_DOCKER_UP: &str =
    "Whether the Docker daemon answered the worker's last ping: 1 yes, 0 no.";
const HELP_PULL_BYTES: &str =
    "Bytes of image layers pulled from registries since the worker started.";
const HELP_PULL_DURATION: &str = "How long image pulls took, in seconds, by result.";
const HELP_COPY_BYTES: &str =
    "Bytes of sidecar images copied into volumes since the worker started.";
const HELP_COPY_DURATION: &str =
    "How long sidecar image copies into volumes took, in seconds, by result.";
const HELP_RETENTION_REMOVED: &str =
    "Unused sidecar volumes and images removed by retention since the worker started, by kind.";
const HELP_RETENTION_FREED: &str =
    "Bytes the sidecar volumes and images removed by retention held, since the worker started.";
/// `kind` of a sidecar volume in `oz_worker_retention_removed_total`.
pub const RETENTION_SIDECAR_VOLUME: &str = "sidecar_volume";
/// `kind` of an image in `oz_worker_retention_removed_total`.
pub const RETENTION_IMAGE: &str = "image";
const HELP_UNACKED: &str =
    "Status messages sent to Oz (or waiting to be) that Oz has not acknowledged yet.";

#[cfg(test)]
mod tests;
