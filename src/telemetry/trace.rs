//! Task traces: one `oz_worker.task` span per assignment (from its arrival
//! to its claim's end, or its rejection), with the Go worker's attributes
//! and events, and child spans for the image pull, each sidecar's
//! preparation and the container run.
//!
//! Owns span identity (random 128/64-bit ids from the kernel), the open task
//! spans keyed by task id, and the bounded queue finished spans wait in for
//! the exporter ([`super::export`]). Recording never blocks: a full queue
//! drops the span and counts it. Strings that come from a task (titles,
//! error messages) pass through the log masking first, so a registered
//! secret never reaches a collector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::events::TaskEvent;
use crate::logging;
use crate::wire::{CANCELLED_STATE, Outbound};

/// Span flags: sampled, and "whether the parent is remote" is known (it is not).
pub const SPAN_FLAGS: u32 = 0x101;
/// Name of the task span, as in the Go worker.
pub const TASK_SPAN: &str = "oz_worker.task";

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// String.
    Str(String),
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub time: SystemTime,
    /// Name, e.g. `task.claimed`.
    pub name: &'static str,
    /// Attributes.
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// A span's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not set (a rejected task, as in Go).
    Unset,
    /// Succeeded (or cancelled by the user, as in Go).
    Ok,
    /// Failed; the message is the failure reason.
    Error(String),
}

/// A finished span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanData {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// The task span's id, for a child.
    pub parent: Option<[u8; 8]>,
    /// Name.
    pub name: &'static str,
    /// Start.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
    /// Attributes.
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Events in time order.
    pub events: Vec<Event>,
    /// Status.
    pub status: Status,
}

/// What waits in the exporter's queue.
#[derive(Debug)]
pub enum Queued {
    /// A finished span.
    Span(SpanData),
    /// Shutdown: export what waits within this budget, then stop.
    Flush(Duration),
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most N - filled bytes into our buffer.
        let n = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n <= 0 {
            // No entropy syscall: time and a counter keep ids distinct per process.
            static FALLBACK: AtomicU64 = AtomicU64::new(1);
            let t = crate::metrics::snapshot::unix_nanos(SystemTime::now());
            let c = FALLBACK.fetch_add(1, Ordering::Relaxed);
            for (i, b) in out[filled..].iter_mut().enumerate() {
                *b = ((t ^ c.rotate_left(17)) >> ((i % 8) * 8)) as u8 ^ (i as u8);
            }
            break;
        }
        filled += n as usize;
    }
    out
}

struct Open {
    span: SpanData,
}

struct Inner {
    worker_id: String,
    backend: String,
    open: Mutex<HashMap<String, Open>>,
    queue: Sender<Queued>,
    dropped: AtomicU64,
}

/// Records spans; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn masked(s: &str) -> AttrValue {
    AttrValue::Str(logging::redact(s))
}

impl Tracer {
    /// A tracer whose finished spans wait (at most `max_queue`) in the returned receiver.
    pub fn new(worker_id: &str, backend: &str, max_queue: usize) -> (Tracer, Receiver<Queued>) {
        let (queue, spans) = crossbeam_channel::bounded(max_queue.max(1));
        let tracer = Tracer {
            inner: Arc::new(Inner {
                worker_id: worker_id.to_owned(),
                backend: backend.to_owned(),
                open: Mutex::new(HashMap::new()),
                queue,
                dropped: AtomicU64::new(0),
            }),
        };
        (tracer, spans)
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, span: SpanData) {
        if let Err(TrySendError::Full(_)) = self.inner.queue.try_send(Queued::Span(span)) {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the exporter for its last export (waits at most `budget` for
    /// room in a full queue).
    pub fn request_flush(&self, budget: Duration) {
        let _ = self.inner.queue.send_timeout(Queued::Flush(budget), budget);
    }

    /// Records `event` on `task_id`'s span.
    pub fn task_event(&self, task_id: &str, event: TaskEvent<'_>) {
        let t = now();
        let mut open = self.lock();
        match event {
            TaskEvent::Assigned { title } => {
                let span = SpanData {
                    trace_id: random(),
                    span_id: random(),
                    parent: None,
                    name: TASK_SPAN,
                    start: t,
                    end: t,
                    attributes: vec![("task.id", masked(task_id)), ("task.title", masked(title))],
                    events: vec![Event {
                        time: t,
                        name: "task.assigned",
                        attributes: vec![
                            ("worker.id", AttrValue::Str(self.inner.worker_id.clone())),
                            ("worker.backend", AttrValue::Str(self.inner.backend.clone())),
                            ("task.id", masked(task_id)),
                        ],
                    }],
                    status: Status::Unset,
                };
                // A duplicate assignment of a running task keeps the first span.
                open.entry(task_id.to_owned()).or_insert(Open { span });
            }
            TaskEvent::Claimed => push(&mut open, task_id, t, "task.claimed", vec![]),
            TaskEvent::Rejected { reason } => {
                push(
                    &mut open,
                    task_id,
                    t,
                    "task.rejected",
                    vec![("reason", AttrValue::Str(reason.metric_label().to_owned()))],
                );
                if let Some(mut o) = open.remove(task_id) {
                    drop(open);
                    o.span.end = t;
                    self.finish(o.span);
                }
            }
            TaskEvent::Started { image } => {
                push(&mut open, task_id, t, "task.started", vec![]);
                push(
                    &mut open,
                    task_id,
                    t,
                    "backend.started",
                    vec![
                        ("backend", AttrValue::Str(self.inner.backend.clone())),
                        ("docker.image", masked(image)),
                    ],
                );
            }
            TaskEvent::CancelRequested { source } => push(
                &mut open,
                task_id,
                t,
                "task.cancellation_requested",
                vec![
                    ("source", AttrValue::Str(source.to_owned())),
                    ("task.id", masked(task_id)),
                ],
            ),
        }
    }

    /// Ends `task_id`'s span with the outcome its terminal message reports.
    pub fn task_finished(&self, message: &Outbound) {
        let t = now();
        let Some(mut o) = self.lock().remove(message.task_id()) else {
            return;
        };
        let span = &mut o.span;
        match message {
            Outbound::TaskCompleted { task_state, .. }
                if task_state.as_deref() == Some(CANCELLED_STATE) =>
            {
                span.events.push(Event {
                    time: t,
                    name: "task.cancelled",
                    attributes: vec![("source", AttrValue::Str("user".into()))],
                });
                span.status = Status::Ok;
            }
            Outbound::TaskCompleted { .. } => {
                span.events.push(Event {
                    time: t,
                    name: "task.completed",
                    attributes: vec![],
                });
                span.status = Status::Ok;
            }
            Outbound::TaskFailed {
                message: text,
                failure_reason,
                exit_code,
                ..
            } => {
                let reason = failure_reason.map_or("unknown", |r| r.as_str());
                span.events.push(Event {
                    time: t,
                    name: "task.failed",
                    attributes: vec![
                        ("failure.phase", AttrValue::Str("backend".into())),
                        ("failure.reason", AttrValue::Str(reason.into())),
                        ("error.message", masked(text)),
                    ],
                });
                // As Go's span.RecordError: an `exception` event.
                span.events.push(Event {
                    time: t,
                    name: "exception",
                    attributes: vec![
                        ("exception.type", AttrValue::Str("task_failed".into())),
                        ("exception.message", masked(text)),
                    ],
                });
                if *exit_code != 0 {
                    span.attributes
                        .push(("task.exit_code", AttrValue::Int(*exit_code)));
                }
                span.status = Status::Error(reason.into());
            }
            Outbound::TaskClaimed { .. } | Outbound::TaskRejected { .. } => return,
        }
        span.end = t;
        self.finish(o.span);
    }

    /// Starts a child span of `task_id`'s span; `None` when it has none.
    pub fn child(
        &self,
        task_id: &str,
        name: &'static str,
        attributes: Vec<(&'static str, AttrValue)>,
    ) -> Option<ChildSpan> {
        let open = self.lock();
        let parent = open.get(task_id)?;
        Some(ChildSpan {
            tracer: self.clone(),
            span: Some(SpanData {
                trace_id: parent.span.trace_id,
                span_id: random(),
                parent: Some(parent.span.span_id),
                name,
                start: now(),
                end: now(),
                attributes,
                events: Vec::new(),
                status: Status::Unset,
            }),
        })
    }
}

fn push(
    open: &mut HashMap<String, Open>,
    task_id: &str,
    time: SystemTime,
    name: &'static str,
    attributes: Vec<(&'static str, AttrValue)>,
) {
    if let Some(o) = open.get_mut(task_id) {
        o.span.events.push(Event {
            time,
            name,
            attributes,
        });
    }
}

/// A child span in progress; ends (and is queued) when dropped.
#[derive(Debug)]
pub struct ChildSpan {
    tracer: Tracer,
    span: Option<SpanData>,
}

impl ChildSpan {
    /// Adds an attribute.
    pub fn attribute(&mut self, key: &'static str, value: AttrValue) {
        if let Some(s) = &mut self.span {
            s.attributes.push((key, value));
        }
    }

    /// Marks it succeeded.
    pub fn ok(&mut self) {
        if let Some(s) = &mut self.span {
            s.status = Status::Ok;
        }
    }

    /// Marks it failed with `message` (masked).
    pub fn error(&mut self, message: &str) {
        if let Some(s) = &mut self.span {
            s.status = Status::Error(logging::redact(message));
        }
    }
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.end = now();
            self.tracer.finish(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FailureReason;

    fn span_of(q: Queued) -> SpanData {
        match q {
            Queued::Span(s) => s,
            Queued::Flush(_) => panic!("a flush, not a span"),
        }
    }

    #[test]
    fn a_task_span_has_go_events_children_and_an_error_status() {
        let (tracer, spans) = Tracer::new("w1", "docker", 16);
        tracer.task_event("T1", TaskEvent::Assigned { title: "fix it" });
        tracer.task_event("T1", TaskEvent::Claimed);
        tracer.task_event("T1", TaskEvent::Started { image: "ubuntu" });
        {
            let mut pull = tracer.child("T1", "oz_worker.image_pull", vec![]).unwrap();
            pull.ok();
        }
        tracer.task_finished(&Outbound::TaskFailed {
            task_id: "T1".into(),
            message: "Failed to execute task: container exited with non-zero status: 3".into(),
            failure_reason: Some(FailureReason::ContainerExit),
            exit_code: 3,
        });
        let child = span_of(spans.try_recv().unwrap());
        let task = span_of(spans.try_recv().unwrap());
        assert_eq!(child.name, "oz_worker.image_pull");
        assert_eq!(child.parent, Some(task.span_id));
        assert_eq!(child.trace_id, task.trace_id);
        assert_eq!(child.status, Status::Ok);
        assert_eq!(task.name, "oz_worker.task");
        assert_eq!(task.parent, None);
        assert_eq!(task.status, Status::Error("container_exit".into()));
        let names: Vec<&str> = task.events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "task.assigned",
                "task.claimed",
                "task.started",
                "backend.started",
                "task.failed",
                "exception"
            ]
        );
        assert_eq!(
            task.attributes[..2],
            [
                ("task.id", AttrValue::Str("T1".into())),
                ("task.title", AttrValue::Str("fix it".into()))
            ]
        );
        assert_ne!(task.trace_id, [0; 16]);
    }

    #[test]
    fn rejection_ends_the_span_unset_and_a_full_queue_drops() {
        let (tracer, spans) = Tracer::new("w1", "docker", 1);
        for id in ["a", "b"] {
            tracer.task_event(id, TaskEvent::Assigned { title: "" });
            tracer.task_event(
                id,
                TaskEvent::Rejected {
                    reason: crate::events::RejectReason::AtCapacity,
                },
            );
        }
        let a = span_of(spans.try_recv().unwrap());
        assert_eq!(a.status, Status::Unset);
        assert_eq!(a.events.last().unwrap().name, "task.rejected");
        assert!(spans.try_recv().is_err());
        assert_eq!(tracer.dropped(), 1);
        assert!(tracer.child("a", "x", vec![]).is_none());
    }

    #[test]
    fn user_cancellation_is_ok_as_in_go() {
        let (tracer, spans) = Tracer::new("w1", "docker", 4);
        tracer.task_event("c", TaskEvent::Assigned { title: "t" });
        tracer.task_finished(&Outbound::TaskCompleted {
            task_id: "c".into(),
            message: "cancelled".into(),
            task_state: Some(CANCELLED_STATE.into()),
        });
        let s = span_of(spans.try_recv().unwrap());
        assert_eq!(s.status, Status::Ok);
        assert_eq!(s.events.last().unwrap().name, "task.cancelled");
    }
}
