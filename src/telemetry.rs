//! Telemetry pushed out of the process, as the Go worker's OpenTelemetry
//! `autoexport` does it: metrics over OTLP/HTTP every interval (the same
//! families, values and buckets the Prometheus scrape shows, from the same
//! [`Snapshot`](crate::metrics::Snapshot)), one trace per task, and
//! `console` printing of either.
//!
//! Owns the exporter threads ([`export`]), their settings ([`config`]), the
//! encodings ([`proto`], [`json`], [`gzip`]), the HTTP client ([`http`],
//! written on the WebSocket's socket code: a general HTTP crate cost about
//! 290 KB of binary and could not share the WebSocket's trust roots), and
//! spans ([`trace`]). It must not decide what a task does: it only
//! observes, through [`TaskTelemetry`] (the dispatcher's observer) and the
//! process-wide hooks below, and an export never waits on a task nor a task
//! on an export.
//!
//! The hooks ([`phase`], [`image_pulled`], [`sidecar_copied`]) are a
//! process-wide side channel installed once by the `run` command: the image
//! pull and the sidecar copy happen deep in the runner, and threading a
//! handle through every call for a record that must never change behaviour
//! would touch every signature. Without [`install`] they do nothing, which is
//! what unit and in-process tests get.

pub mod config;
pub mod export;
pub mod gzip;
pub mod http;
pub mod json;
pub mod proto;
pub mod trace;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::events::{DispatchObserver, RejectReason, TaskEvent};
use crate::metrics::{Metrics, WorkResult, WorkerInfo};
use crate::net::{self, ProxySettings, RootSource, TlsSetupError};
use crate::wire::Outbound;

pub use config::{TelemetryConfig, TelemetryConfigError};
pub use trace::{AttrValue, ChildSpan, Tracer};

use config::{MetricsExport, OtlpSettings, Protocol, TraceExport};
use export::{Exporters, MetricsJob, Pusher, TracesJob};

/// How long shutdown waits for the last export (as the Go worker's 5 s).
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Why telemetry could not start.
#[derive(Debug)]
pub enum StartError {
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` (or a per-signal one) is unusable.
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The TLS configuration could not be built.
    Tls(TlsSetupError),
    /// The proxy for the collector is unusable.
    Proxy(http::TargetError),
    /// An exporter thread could not start.
    Thread(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate { path, problem } => write!(
                f,
                "OTLP certificate file {path}: {problem}; point OTEL_EXPORTER_OTLP_CERTIFICATE at a PEM file of the collector's CA"
            ),
            Self::Tls(e) => e.fmt(f),
            Self::Proxy(e) => write!(f, "OTLP push: {e}"),
            Self::Thread(e) => write!(f, "could not start a telemetry thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The running exporters.
pub struct Telemetry {
    exporters: Exporters,
    tracer: Option<Tracer>,
    /// One line per exporter, for the start-up log.
    pub described: Vec<String>,
}

impl Telemetry {
    /// Starts what `cfg` asks for; nothing runs when it asks for nothing.
    pub fn start(
        cfg: &TelemetryConfig,
        metrics: &Metrics,
        worker: &WorkerInfo,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Telemetry, StartError> {
        let mut targets = Targets {
            proxies: ProxySettings::from_env(env),
            env,
            default_tls: None,
        };
        let mut started = Telemetry {
            exporters: Exporters::default(),
            tracer: None,
            described: Vec::new(),
        };
        if let Some(m) = &cfg.metrics {
            started.start_metrics(m, metrics, &mut targets)?;
        }
        if let Some(t) = &cfg.traces {
            started.tracer = Some(started.start_traces(t, metrics, worker, &mut targets)?);
        }
        Ok(started)
    }

    /// The metrics exporter thread: OTLP push and/or console printing.
    fn start_metrics(
        &mut self,
        m: &MetricsExport,
        metrics: &Metrics,
        targets: &mut Targets<'_>,
    ) -> Result<(), StartError> {
        let pusher = match &m.otlp {
            Some(s) => {
                self.described.push(format!(
                    "pushing metrics over OTLP ({}) to {} every {} ms",
                    protocol_words(s),
                    s.endpoint.shown(),
                    m.interval.as_millis()
                ));
                Some(Pusher::new("metrics", targets.target(s)?, s.protocol))
            }
            None => None,
        };
        if m.console {
            self.described.push(format!(
                "printing metrics to stdout every {} ms",
                m.interval.as_millis()
            ));
        }
        let job = MetricsJob {
            pusher,
            console: m.console,
            interval: m.interval,
            timeout: m.timeout,
        };
        let metrics = metrics.clone();
        self.exporters
            .spawn("otlp-metrics", move |stop| {
                export::run_metrics(job, metrics, stop)
            })
            .map_err(StartError::Thread)
    }

    /// The traces exporter thread; returns the tracer that feeds it.
    fn start_traces(
        &mut self,
        t: &TraceExport,
        metrics: &Metrics,
        worker: &WorkerInfo,
        targets: &mut Targets<'_>,
    ) -> Result<Tracer, StartError> {
        let pusher = match &t.otlp {
            Some(s) => {
                self.described.push(format!(
                    "pushing one trace per task over OTLP ({}) to {}",
                    protocol_words(s),
                    s.endpoint.shown()
                ));
                Some(Pusher::new("traces", targets.target(s)?, s.protocol))
            }
            None => None,
        };
        if t.console {
            self.described
                .push("printing one trace per task to stdout".into());
        }
        let (tracer, queue) = Tracer::new(&worker.worker_id, &worker.backend, t.batch.max_queue);
        let job = TracesJob {
            pusher,
            console: t.console,
            batch: t.batch,
        };
        let resource = metrics.resource();
        let stopper = tracer.clone();
        self.exporters
            .spawn_stopped_by(
                "otlp-traces",
                move |budget| stopper.request_flush(budget),
                move || export::run_traces(job, resource, queue),
            )
            .map_err(StartError::Thread)?;
        Ok(tracer)
    }

    /// The tracer, when traces are exported.
    pub fn tracer(&self) -> Option<&Tracer> {
        self.tracer.as_ref()
    }

    /// The shutdown hook: one last export of every signal (the final metric
    /// values, the spans still queued), waiting at most [`FINAL_FLUSH`].
    /// Call it after the dispatcher has stopped, so the last values are final.
    pub fn flush_and_stop(self) {
        if !self.exporters.is_empty() {
            self.exporters.flush_and_stop(FINAL_FLUSH);
        }
    }
}

/// Builds the exporters' [`http::Target`]s; the default trust roots are
/// loaded once, on first use, and shared.
struct Targets<'a> {
    proxies: ProxySettings,
    env: &'a dyn Fn(&str) -> Option<String>,
    default_tls: Option<Arc<ClientConfig>>,
}

impl Targets<'_> {
    fn target(&mut self, s: &OtlpSettings) -> Result<http::Target, StartError> {
        let tls = match &s.certificate {
            Some(path) => only_roots_of(path)?,
            None => match &self.default_tls {
                Some(t) => t.clone(),
                None => {
                    let (roots, _, _) = net::load_roots(&RootSource::from_env(self.env));
                    let t = net::client_config(roots).map_err(StartError::Tls)?;
                    self.default_tls = Some(t.clone());
                    t
                }
            },
        };
        http::Target::new(s, &self.proxies, tls).map_err(StartError::Proxy)
    }
}

fn protocol_words(s: &OtlpSettings) -> String {
    let p = match s.protocol {
        Protocol::Protobuf => "http/protobuf",
        Protocol::Json => "http/json",
    };
    if s.gzip {
        format!("{p}, gzip")
    } else {
        p.into()
    }
}

/// A client configuration trusting only the PEM certificates in `path`
/// (the Go exporter replaces its root pool with the file's).
fn only_roots_of(path: &std::path::Path) -> Result<Arc<ClientConfig>, StartError> {
    let err = |problem: String| StartError::Certificate {
        path: path.display().to_string(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err("it holds no usable certificate".into()));
    }
    net::client_config(roots).map_err(StartError::Tls)
}

/// The dispatcher's observer: metrics, and spans when traces are on.
pub struct TaskTelemetry {
    /// The metrics.
    pub metrics: Metrics,
    /// The tracer.
    pub tracer: Option<Tracer>,
}

impl DispatchObserver for TaskTelemetry {
    fn claimed(&self) {
        DispatchObserver::claimed(&self.metrics);
    }

    fn adopted(&self) {
        DispatchObserver::adopted(&self.metrics);
    }

    fn rejected(&self, reason: RejectReason) {
        DispatchObserver::rejected(&self.metrics, reason);
    }

    fn finished(&self, message: &Outbound, elapsed: Duration) {
        DispatchObserver::finished(&self.metrics, message, elapsed);
        if let Some(t) = &self.tracer {
            t.task_finished(message);
        }
    }

    fn active(&self, count: usize) {
        DispatchObserver::active(&self.metrics, count);
    }

    fn task_event(&self, task_id: &str, event: TaskEvent<'_>) {
        if let Some(t) = &self.tracer {
            t.task_event(task_id, event);
        }
    }
}

struct Hub {
    metrics: Metrics,
    tracer: Option<Tracer>,
}

static HUB: OnceLock<Hub> = OnceLock::new();

/// Installs the process-wide hooks (once; later calls are ignored).
pub fn install(metrics: Metrics, tracer: Option<Tracer>) {
    let _ = HUB.set(Hub { metrics, tracer });
}

/// A child span of the task this thread runs (see [`crate::logging::TaskScope`]);
/// `None` without traces. It ends when dropped.
pub fn phase(name: &'static str, attributes: Vec<(&'static str, AttrValue)>) -> Option<ChildSpan> {
    let tracer = HUB.get()?.tracer.as_ref()?;
    let task = crate::logging::current_task()?;
    tracer.child(&task, name, attributes)
}

/// Records an image pull.
pub fn image_pulled(result: WorkResult, took: Duration, bytes: u64) {
    if let Some(hub) = HUB.get() {
        hub.metrics.image_pulled(result, took, bytes);
    }
}

/// Records a sidecar copy.
pub fn sidecar_copied(result: WorkResult, took: Duration, bytes: u64) {
    if let Some(hub) = HUB.get() {
        hub.metrics.sidecar_copied(result, took, bytes);
    }
}

/// Records what a retention pass removed.
pub fn retention_removed(volumes: usize, images: usize, bytes: u64) {
    if let Some(hub) = HUB.get() {
        hub.metrics.retention_removed(volumes, images, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running worker's observer is this one, not [`Metrics`]: every
    /// lifecycle event must reach the metrics through it.
    #[test]
    fn the_dispatch_observer_forwards_every_count_to_the_metrics() {
        let metrics = Metrics::new(
            WorkerInfo {
                version: "1".into(),
                backend: "docker".into(),
                worker_id: "w".into(),
            },
            0,
        );
        let obs = TaskTelemetry {
            metrics: metrics.clone(),
            tracer: None,
        };
        obs.claimed();
        obs.adopted();
        obs.rejected(RejectReason::AtCapacity);
        obs.active(3);
        let scrape = metrics.render();
        for line in [
            "oz_worker_tasks_claimed_total{",
            "oz_worker_tasks_adopted_total{",
            "oz_worker_tasks_active{",
        ] {
            let sample = scrape
                .lines()
                .find(|l| l.starts_with(line))
                .unwrap_or_else(|| panic!("{line} missing:\n{scrape}"));
            assert!(!sample.ends_with(" 0"), "{sample}");
        }
        assert!(scrape.contains("reason=\"at_capacity\"} 1\n"), "{scrape}");
    }
}
