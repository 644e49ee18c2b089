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
pub mod health;
pub mod labels;
pub mod render;
pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::dispatch::DispatchObserver;
use crate::wire::Outbound;

pub use env::{EnvError, ListenAddr, config_from_env};
pub use health::{Health, NotReady};
pub use labels::{ReconnectReason, TaskResult};
pub use server::{ServerHandle, serve};

use labels::{FAILURE_PHASES, FAILURE_REASONS, PHASE_BACKEND, RECONNECT_REASONS};
use render::{Exposition, Kind};

/// Upper bounds of `oz_worker_task_duration_seconds`: the OpenTelemetry SDK's
/// default explicit buckets, which the Go worker keeps.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// The instrumentation scope the Go worker's exporter puts on every series.
const SCOPE_LABELS: [(&str, &str); 3] = [
    ("otel_scope_name", "github.com/warpdotdev/oz-agent-worker"),
    ("otel_scope_schema_url", ""),
    ("otel_scope_version", ""),
];

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

/// The worker's metrics; cheap to clone, shared by every thread that records.
#[derive(Debug, Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    info: WorkerInfo,
    connected: bool,
    active: usize,
    max_concurrent: usize,
    claimed: u64,
    adopted: u64,
    rejected: BTreeMap<&'static str, u64>,
    completed: BTreeMap<&'static str, u64>,
    durations: BTreeMap<&'static str, Histogram>,
    failures: BTreeMap<(&'static str, &'static str), u64>,
    reconnects: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last is above every bound.
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        // Buckets are upper-inclusive, as in OpenTelemetry.
        let i = DURATION_BUCKETS.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
    }
}

impl Metrics {
    /// Every known series primed at zero, as a fresh Go worker shows them.
    pub fn new(info: WorkerInfo, max_concurrent: usize) -> Self {
        let mut failures = BTreeMap::new();
        for phase in FAILURE_PHASES {
            for reason in FAILURE_REASONS {
                failures.insert((phase, reason), 0);
            }
        }
        let state = State {
            info,
            connected: false,
            active: 0,
            max_concurrent,
            claimed: 0,
            adopted: 0,
            rejected: BTreeMap::from([(labels::REJECT_AT_CAPACITY, 0)]),
            completed: TaskResult::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            // Unprimed on purpose, like Go: a fake 0 s sample would skew latency.
            durations: BTreeMap::new(),
            failures,
            reconnects: RECONNECT_REASONS.iter().map(|r| (*r, 0)).collect(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records whether the WebSocket connection to Oz is up.
    pub fn set_connected(&self, connected: bool) {
        self.lock().connected = connected;
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

    /// Records a rejection sent with `wire_reason`.
    pub fn task_rejected(&self, wire_reason: &str) {
        *self
            .lock()
            .rejected
            .entry(labels::reject_label(wire_reason))
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

    /// The scrape: Prometheus text format 0.0.4, families in name order.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut e = Exposition::default();
        let scoped = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            SCOPE_LABELS
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned())))
                .collect()
        };
        let sample = |e: &mut Exposition, name: &str, labels: &[(&str, String)], v: f64| {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.sample(name, &l, None, v);
        };

        let name = "oz_worker_connected";
        e.family(name, HELP_CONNECTED, Kind::Gauge);
        sample(&mut e, name, &scoped(&[]), f64::from(u8::from(s.connected)));

        let name = "oz_worker_info";
        e.family(name, HELP_INFO, Kind::Gauge);
        let mut info = vec![("backend", s.info.backend.clone())];
        info.extend(scoped(&[
            ("version", &s.info.version),
            ("worker_id", &s.info.worker_id),
        ]));
        sample(&mut e, name, &info, 1.0);

        if !s.durations.is_empty() {
            let name = "oz_worker_task_duration_seconds";
            e.family(name, HELP_DURATION, Kind::Histogram);
            for (result, h) in &s.durations {
                let labels = scoped(&[("result", result)]);
                let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut cumulative = 0;
                for (bound, count) in DURATION_BUCKETS.iter().zip(h.counts) {
                    cumulative += count;
                    e.sample(
                        &format!("{name}_bucket"),
                        &l,
                        Some(*bound),
                        cumulative as f64,
                    );
                }
                let total: u64 = h.counts.iter().sum();
                e.sample(
                    &format!("{name}_bucket"),
                    &l,
                    Some(f64::INFINITY),
                    total as f64,
                );
                e.sample(&format!("{name}_sum"), &l, None, h.sum);
                e.sample(&format!("{name}_count"), &l, None, total as f64);
            }
        }

        let name = "oz_worker_task_failures_total";
        e.family(name, HELP_FAILURES, Kind::Counter);
        for ((phase, reason), n) in &s.failures {
            let labels = scoped(&[("phase", phase), ("reason", reason)]);
            sample(&mut e, name, &labels, *n as f64);
        }

        let name = "oz_worker_tasks_active";
        e.family(name, HELP_ACTIVE, Kind::Gauge);
        sample(&mut e, name, &scoped(&[]), s.active as f64);

        // Ours (the Go worker adopts nothing): shown once it happens.
        if s.adopted > 0 {
            let name = "oz_worker_tasks_adopted_total";
            e.family(name, HELP_ADOPTED, Kind::Counter);
            sample(&mut e, name, &scoped(&[]), s.adopted as f64);
        }

        let name = "oz_worker_tasks_claimed_total";
        e.family(name, HELP_CLAIMED, Kind::Counter);
        sample(&mut e, name, &scoped(&[]), s.claimed as f64);

        let name = "oz_worker_tasks_completed_total";
        e.family(name, HELP_COMPLETED, Kind::Counter);
        for (result, n) in &s.completed {
            sample(&mut e, name, &scoped(&[("result", result)]), *n as f64);
        }

        let name = "oz_worker_tasks_max_concurrent";
        e.family(name, HELP_MAX_CONCURRENT, Kind::Gauge);
        sample(&mut e, name, &scoped(&[]), s.max_concurrent as f64);

        let name = "oz_worker_tasks_rejected_total";
        e.family(name, HELP_REJECTED, Kind::Counter);
        for (reason, n) in &s.rejected {
            sample(&mut e, name, &scoped(&[("reason", reason)]), *n as f64);
        }

        let name = "oz_worker_websocket_reconnects_total";
        e.family(name, HELP_RECONNECTS, Kind::Counter);
        for (reason, n) in &s.reconnects {
            sample(&mut e, name, &scoped(&[("reason", reason)]), *n as f64);
        }

        // The Go worker's HTTP handler registers this in the same registry.
        let name = "promhttp_metric_handler_errors_total";
        e.family(name, HELP_HANDLER_ERRORS, Kind::Counter);
        for cause in ["encoding", "gathering"] {
            e.sample(name, &[("cause", cause)], None, 0.0);
        }

        let name = "target_info";
        e.family(name, "Target metadata", Kind::Gauge);
        let mut target = vec![("service_name", "oz-agent-worker")];
        if !s.info.version.is_empty() {
            target.push(("service_version", &s.info.version));
        }
        target.push(("worker_backend", &s.info.backend));
        if !s.info.worker_id.is_empty() {
            target.push(("worker_id", &s.info.worker_id));
        }
        e.sample(name, &target, None, 1.0);

        e.finish()
    }
}

impl DispatchObserver for Metrics {
    fn claimed(&self) {
        self.task_claimed();
    }

    fn adopted(&self) {
        self.lock().adopted += 1;
    }

    fn rejected(&self, reason: &str) {
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
const HELP_HANDLER_ERRORS: &str =
    "Errors the metrics endpoint hit while gathering or encoding a scrape.";

#[cfg(test)]
mod tests;
