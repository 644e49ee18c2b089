//! The families of one [`Metrics::snapshot`](super::Metrics::snapshot),
//! built from the recorded state by concern: the worker and its
//! connection, Docker and what the worker keeps on it (pulls, sidecar
//! copies, retention), and tasks. Pure reading; recording is the parent's.

use std::collections::BTreeMap;

use super::snapshot::{Family, Instrument, Point, Value};
use super::{
    HELP_ACTIVE, HELP_ADOPTED, HELP_CLAIMED, HELP_COMPLETED, HELP_CONNECTED, HELP_COPY_BYTES,
    HELP_COPY_DURATION, HELP_DOCKER_UP, HELP_DURATION, HELP_FAILURES, HELP_INFO,
    HELP_MAX_CONCURRENT, HELP_PREFETCH, HELP_PULL_BYTES, HELP_PULL_DURATION, HELP_RECONNECTS,
    HELP_REJECTED, HELP_RETENTION_FREED, HELP_RETENTION_REMOVED, HELP_UNACKED, Histogram, State,
};

use Instrument::{Counter, Gauge, Histogram as Hist, UpDownCounter};

/// Values read outside the state's lock (the sources take their own).
pub(super) struct Sourced {
    /// The outbox's length.
    pub unacknowledged: usize,
    /// Images by prefetch state.
    pub prefetch: Vec<(&'static str, u64)>,
}

impl State {
    /// Every family, in name order, with those that have no series left out
    /// (a histogram with no observation has none, as in Go, nor a counter
    /// shown only once it happens).
    pub(super) fn families(&self, sourced: &Sourced) -> Vec<Family> {
        let mut families = self.worker_families(sourced);
        families.extend(self.docker_families(sourced));
        families.extend(self.task_families());
        families.sort_by_key(|f| f.name);
        families.retain(|f| !f.points.is_empty());
        families
    }

    /// The worker itself, its connection and its outbox.
    fn worker_families(&self, sourced: &Sourced) -> Vec<Family> {
        vec![
            family(
                "oz_worker_connected",
                HELP_CONNECTED,
                "",
                Gauge,
                one(u64::from(self.connected)),
            ),
            family(
                "oz_worker_info",
                HELP_INFO,
                "",
                Gauge,
                vec![Point {
                    attributes: vec![
                        ("backend", self.info.backend.clone()),
                        ("version", self.info.version.clone()),
                        ("worker_id", self.info.worker_id.clone()),
                    ],
                    value: Value::Int(1),
                }],
            ),
            family(
                "oz_worker_status_messages_unacknowledged",
                HELP_UNACKED,
                "",
                Gauge,
                one(sourced.unacknowledged as u64),
            ),
            family(
                "oz_worker_websocket_reconnects_total",
                HELP_RECONNECTS,
                "",
                Counter,
                by("reason", &self.reconnects),
            ),
        ]
    }

    /// The Docker daemon and what the worker keeps on it.
    fn docker_families(&self, sourced: &Sourced) -> Vec<Family> {
        vec![
            family(
                "oz_worker_docker_up",
                HELP_DOCKER_UP,
                "",
                Gauge,
                one(u64::from(self.docker_up)),
            ),
            family(
                "oz_worker_image_pull_bytes_total",
                HELP_PULL_BYTES,
                "By",
                Counter,
                one(self.pull_bytes),
            ),
            family(
                "oz_worker_image_pull_duration_seconds",
                HELP_PULL_DURATION,
                "s",
                Hist,
                hist(&self.pull_durations),
            ),
            // Ours: shown once the prefetch has something to do.
            family(
                "oz_worker_prefetch_images",
                HELP_PREFETCH,
                "",
                Gauge,
                sourced
                    .prefetch
                    .iter()
                    .map(|(state, n)| Point {
                        attributes: vec![("state", (*state).to_owned())],
                        value: int(*n),
                    })
                    .collect(),
            ),
            // Ours: shown once retention has removed something.
            family(
                "oz_worker_retention_freed_bytes_total",
                HELP_RETENTION_FREED,
                "By",
                Counter,
                if self.retention_removed.is_empty() {
                    Vec::new()
                } else {
                    one(self.retention_freed)
                },
            ),
            family(
                "oz_worker_retention_removed_total",
                HELP_RETENTION_REMOVED,
                "",
                Counter,
                by("kind", &self.retention_removed),
            ),
            family(
                "oz_worker_sidecar_copy_bytes_total",
                HELP_COPY_BYTES,
                "By",
                Counter,
                one(self.copy_bytes),
            ),
            family(
                "oz_worker_sidecar_copy_duration_seconds",
                HELP_COPY_DURATION,
                "s",
                Hist,
                hist(&self.copy_durations),
            ),
        ]
    }

    /// Tasks: how many run, how they came and how they ended.
    fn task_families(&self) -> Vec<Family> {
        vec![
            family(
                "oz_worker_task_duration_seconds",
                HELP_DURATION,
                "s",
                Hist,
                hist(&self.durations),
            ),
            family(
                "oz_worker_task_failures_total",
                HELP_FAILURES,
                "",
                Counter,
                self.failures
                    .iter()
                    .map(|((phase, reason), n)| Point {
                        attributes: vec![
                            ("phase", (*phase).to_owned()),
                            ("reason", (*reason).to_owned()),
                        ],
                        value: int(*n),
                    })
                    .collect(),
            ),
            family(
                "oz_worker_tasks_active",
                HELP_ACTIVE,
                "",
                UpDownCounter,
                one(self.active as u64),
            ),
            // Ours (the Go worker adopts nothing): shown once it happens.
            family(
                "oz_worker_tasks_adopted_total",
                HELP_ADOPTED,
                "",
                Counter,
                if self.adopted > 0 {
                    one(self.adopted)
                } else {
                    Vec::new()
                },
            ),
            family(
                "oz_worker_tasks_claimed_total",
                HELP_CLAIMED,
                "",
                Counter,
                one(self.claimed),
            ),
            family(
                "oz_worker_tasks_completed_total",
                HELP_COMPLETED,
                "",
                Counter,
                by("result", &self.completed),
            ),
            family(
                "oz_worker_tasks_max_concurrent",
                HELP_MAX_CONCURRENT,
                "",
                Gauge,
                one(self.max_concurrent as u64),
            ),
            family(
                "oz_worker_tasks_rejected_total",
                HELP_REJECTED,
                "",
                Counter,
                by("reason", &self.rejected),
            ),
        ]
    }
}

fn family(
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    instrument: Instrument,
    points: Vec<Point>,
) -> Family {
    Family {
        name,
        help,
        unit,
        instrument,
        points,
    }
}

/// A count as a metric value (saturating: the wire type is signed).
fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// One unlabelled series.
fn one(v: u64) -> Vec<Point> {
    vec![Point {
        attributes: Vec::new(),
        value: int(v),
    }]
}

/// One series per key of `m`, labelled `label`.
fn by(label: &'static str, m: &BTreeMap<&'static str, u64>) -> Vec<Point> {
    m.iter()
        .map(|(k, v)| Point {
            attributes: vec![(label, (*k).to_owned())],
            value: int(*v),
        })
        .collect()
}

/// One histogram series per result.
fn hist(m: &BTreeMap<&'static str, Histogram>) -> Vec<Point> {
    m.iter()
        .map(|(k, h)| Point {
            attributes: vec![("result", (*k).to_owned())],
            value: h.value(),
        })
        .collect()
}
