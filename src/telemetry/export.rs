//! The exporter threads: metrics every `OTEL_METRIC_EXPORT_INTERVAL`,
//! spans in batches, each pushed to its [`Target`] (and/or printed for
//! `console`), with one last export when the worker shuts down.
//!
//! Owns the push schedule and what a failure looks like to the operator:
//! one WARN per distinct error (not one per attempt), pushes spaced out
//! exponentially while the collector fails (nothing is lost: the sums are
//! cumulative), one INFO when it works again. Runs on its own threads; a
//! task never waits for an export.

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::metrics::{Metrics, Resource};

use super::config::{BatchSettings, Protocol};
use super::http::Target;
use super::trace::{Queued, SpanData};
use super::{json, proto};

/// The longest pushes are spaced while a collector keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One signal's push destination and failure memory.
pub struct Pusher {
    signal: &'static str,
    target: Target,
    protocol: Protocol,
    last_error: Option<String>,
    failures: u32,
}

impl Pusher {
    /// Pushes `signal` ("metrics", "traces") to `target` as `protocol`.
    pub fn new(signal: &'static str, target: Target, protocol: Protocol) -> Pusher {
        Pusher {
            signal,
            target,
            protocol,
            last_error: None,
            failures: 0,
        }
    }

    /// One export; logs only what the operator has not been told yet.
    fn push(&mut self, body: &[u8], budget: Duration) -> bool {
        match self.target.post(body, budget) {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    info!(
                        "OTLP {} push to {} works again",
                        self.signal,
                        self.target.shown()
                    );
                }
                self.failures = 0;
                true
            }
            Err(e) => {
                let kind = e.kind();
                if self.last_error.as_deref() != Some(kind.as_str()) {
                    warn!(
                        "OTLP {} push to {} failed: {e}; retrying with back-off, tasks are not affected",
                        self.signal,
                        self.target.shown()
                    );
                    self.last_error = Some(kind);
                }
                self.failures = self.failures.saturating_add(1);
                false
            }
        }
    }
}

/// The wait before the next push: the interval, doubled per failure in a
/// row up to [`MAX_BACKOFF`] (or the interval, when that is longer).
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let doubled = interval.saturating_mul(1u32 << failures.min(16));
    doubled.min(MAX_BACKOFF.max(interval))
}

fn print_line(body: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(body);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Settings of the metrics thread.
pub struct MetricsJob {
    /// The OTLP destination.
    pub pusher: Option<Pusher>,
    /// Also print every export.
    pub console: bool,
    /// Push interval.
    pub interval: Duration,
    /// The most one export may take.
    pub timeout: Duration,
}

/// Runs the metrics thread until `stop` fires (or its sender goes), then
/// exports once more within `final_budget()`.
pub fn run_metrics(mut job: MetricsJob, metrics: Metrics, stop: Receiver<Duration>) {
    let export = |job: &mut MetricsJob, budget: Duration| {
        let snapshot = metrics.snapshot();
        let resource = metrics.resource();
        if job.console {
            print_line(&json::metrics_request(&snapshot, &resource));
        }
        if let Some(p) = &mut job.pusher {
            let body = match p.protocol {
                Protocol::Protobuf => proto::metrics_request(&snapshot, &resource),
                Protocol::Json => json::metrics_request(&snapshot, &resource),
            };
            p.push(&body, budget);
        }
    };
    loop {
        let failures = job.pusher.as_ref().map_or(0, |p| p.failures);
        match stop.recv_timeout(next_delay(job.interval, failures)) {
            Err(RecvTimeoutError::Timeout) => {
                let budget = job.timeout;
                export(&mut job, budget);
            }
            Ok(budget) => {
                export(&mut job, budget);
                return;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Settings of the traces thread.
pub struct TracesJob {
    /// The OTLP destination.
    pub pusher: Option<Pusher>,
    /// Also print every batch.
    pub console: bool,
    /// Batching.
    pub batch: BatchSettings,
}

fn export_spans(job: &mut TracesJob, spans: &[SpanData], resource: &Resource, budget: Duration) {
    if spans.is_empty() {
        return;
    }
    if job.console {
        print_line(&json::traces_request(spans, resource));
    }
    if let Some(p) = &mut job.pusher {
        let body = match p.protocol {
            Protocol::Protobuf => proto::traces_request(spans, resource),
            Protocol::Json => json::traces_request(spans, resource),
        };
        p.push(&body, budget);
    }
}

/// Runs the traces thread: a batch goes out when it is full or its oldest
/// span has waited the schedule delay; on [`Queued::Flush`], whatever waits
/// goes out and the thread ends.
pub fn run_traces(mut job: TracesJob, resource: Resource, queue: Receiver<Queued>) {
    let mut batch: Vec<SpanData> = Vec::new();
    let mut due: Option<Instant> = None;
    loop {
        let next = match due {
            Some(d) => match queue.recv_deadline(d) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match queue.recv() {
                Ok(item) => Some(item),
                Err(_) => return,
            },
        };
        match next {
            None => {
                let budget = job.batch.export_timeout;
                export_spans(&mut job, &batch, &resource, budget);
                batch.clear();
                due = None;
            }
            Some(Queued::Span(span)) => {
                if batch.is_empty() {
                    due = Some(Instant::now() + job.batch.schedule_delay);
                }
                batch.push(span);
                if batch.len() >= job.batch.max_batch {
                    let budget = job.batch.export_timeout;
                    export_spans(&mut job, &batch, &resource, budget);
                    batch.clear();
                    due = None;
                }
            }
            Some(Queued::Flush(budget)) => {
                let deadline = Instant::now() + budget;
                batch.extend(queue.try_iter().filter_map(|q| match q {
                    Queued::Span(s) => Some(s),
                    Queued::Flush(_) => None,
                }));
                for chunk in batch.chunks(job.batch.max_batch.max(1)) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    export_spans(&mut job, chunk, &resource, left);
                }
                return;
            }
        }
    }
}

/// The running exporter threads.
pub struct Exporters {
    stops: Vec<Box<dyn FnOnce(Duration) + Send>>,
    // Durations, like the stop channels: one channel type instantiated, not two.
    done_tx: Sender<Duration>,
    done: Receiver<Duration>,
    running: usize,
}

impl Default for Exporters {
    fn default() -> Self {
        // Room for every exporter thread there is (metrics, traces).
        let (done_tx, done) = crossbeam_channel::bounded(4);
        Self {
            stops: Vec::new(),
            done_tx,
            done,
            running: 0,
        }
    }
}

impl Exporters {
    /// Starts `job` on a thread named `name`; it gets the stop channel
    /// (carrying the last export's time budget).
    pub fn spawn(
        &mut self,
        name: &str,
        job: impl FnOnce(Receiver<Duration>) + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop) = crossbeam_channel::bounded(1);
        self.spawn_stopped_by(
            name,
            move |budget| {
                let _ = stop_tx.try_send(budget);
            },
            move || job(stop),
        )
    }

    /// Starts `job` on a thread named `name`; `stop` asks it for its last
    /// export (with the time budget for it).
    pub fn spawn_stopped_by(
        &mut self,
        name: &str,
        stop: impl FnOnce(Duration) + Send + 'static,
        job: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let done = self.done_tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                job();
                let _ = done.try_send(Duration::ZERO);
            })?;
        self.stops.push(Box::new(stop));
        self.running += 1;
        Ok(())
    }

    /// True when no exporter runs.
    pub fn is_empty(&self) -> bool {
        self.running == 0
    }

    /// Asks every thread for its last export and waits for them until
    /// `budget` has passed; a collector that hangs cannot hold shutdown longer.
    pub fn flush_and_stop(self, budget: Duration) {
        let deadline = Instant::now() + budget;
        for stop in self.stops {
            stop(budget);
        }
        for _ in 0..self.running {
            if self.done.recv_deadline(deadline).is_err() {
                warn!(
                    "the last telemetry export did not finish within {} ms; exiting without it",
                    budget.as_millis()
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_space_pushes_out_up_to_five_minutes() {
        let m = Duration::from_secs(60);
        assert_eq!(next_delay(m, 0), m);
        assert_eq!(next_delay(m, 1), Duration::from_secs(120));
        assert_eq!(next_delay(m, 2), Duration::from_secs(240));
        assert_eq!(next_delay(m, 3), MAX_BACKOFF);
        assert_eq!(next_delay(m, 1000), MAX_BACKOFF);
        let long = Duration::from_secs(600);
        assert_eq!(next_delay(long, 5), long);
        let short = Duration::from_millis(200);
        assert_eq!(next_delay(short, 2), Duration::from_millis(800));
    }
}
