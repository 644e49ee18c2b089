//! Exact scrapes of a fresh worker and of a small scenario, against golden
//! files checked line by line against what a Go worker's exporter writes.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::wire::FailureReason;

fn metrics() -> Metrics {
    Metrics::new(
        WorkerInfo {
            version: "0.1.0".into(),
            backend: "docker".into(),
            worker_id: "prod-1".into(),
        },
        4,
    )
}

fn failed(reason: FailureReason) -> Outbound {
    Outbound::TaskFailed {
        task_id: "t".into(),
        message: "m".into(),
        failure_reason: Some(reason),
        exit_code: 137,
    }
}

fn completed(state: Option<&str>) -> Outbound {
    Outbound::TaskCompleted {
        task_id: "t".into(),
        message: "m".into(),
        task_state: state.map(str::to_owned),
    }
}

#[test]
fn fresh_scrape_primes_every_go_series_at_zero() {
    assert_eq!(metrics().render(), include_str!("testdata/fresh.prom"));
}

#[test]
fn scenario_scrape_is_exact() {
    let m = metrics();
    let obs: &dyn DispatchObserver = &m;
    m.set_connected(true);
    m.reconnect(ReconnectReason::DialFailed);
    m.reconnect(ReconnectReason::DialFailed);
    m.reconnect(ReconnectReason::RemoteClose);
    obs.claimed();
    obs.claimed();
    obs.claimed();
    obs.active(3);
    obs.rejected(RejectReason::AtCapacity);
    obs.rejected(RejectReason::ShuttingDown);
    obs.finished(&completed(None), Duration::from_millis(750));
    obs.finished(&completed(None), Duration::from_millis(1500));
    obs.finished(&completed(Some("CANCELLED")), Duration::from_secs(12));
    obs.finished(
        &failed(FailureReason::ContainerOom),
        Duration::from_secs(20_000),
    );
    obs.active(0);
    m.set_docker_up(true);
    m.set_unacknowledged_source(Arc::new(|| 2));
    m.image_pulled(
        WorkResult::Succeeded,
        Duration::from_millis(2500),
        1_234_567,
    );
    m.image_pulled(WorkResult::Failed, Duration::from_secs(7), 0);
    m.sidecar_copied(WorkResult::Succeeded, Duration::from_millis(1500), 999);
    assert_eq!(m.render(), include_str!("testdata/scenario.prom"));
}

#[test]
fn snapshot_holds_what_the_scrape_shows() {
    let m = metrics();
    m.image_pulled(WorkResult::Succeeded, Duration::from_millis(2500), 10);
    m.image_pulled(WorkResult::Succeeded, Duration::from_secs(30), 5);
    let snap = m.snapshot();
    let names: Vec<&str> = snap.families.iter().map(|f| f.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let pull = snap
        .families
        .iter()
        .find(|f| f.name == "oz_worker_image_pull_duration_seconds")
        .unwrap();
    assert_eq!(pull.unit, "s");
    let Value::Histogram(h) = &pull.points[0].value else {
        panic!("not a histogram")
    };
    assert_eq!((h.min, h.max, h.sum, h.count()), (2.5, 30.0, 32.5, 2));
    let bytes = snap
        .families
        .iter()
        .find(|f| f.name == "oz_worker_image_pull_bytes_total")
        .unwrap();
    assert_eq!(bytes.points[0].value, Value::Int(15));
}

#[test]
fn durations_land_in_upper_inclusive_buckets() {
    let mut h = Histogram::default();
    for v in [0.0, 5.0, 5.000001, 10000.0, 10000.5] {
        h.observe(v);
    }
    let mut want = [0u64; 16];
    want[0] = 1; // le=0
    want[1] = 1; // le=5
    want[2] = 1; // le=10
    want[14] = 1; // le=10000
    want[15] = 1; // +Inf
    assert_eq!(h.counts, want);
    assert_eq!(h.sum, 0.0 + 5.0 + 5.000001 + 10000.0 + 10000.5);
}

#[test]
fn label_values_are_escaped_in_info() {
    let m = Metrics::new(
        WorkerInfo {
            version: String::new(),
            backend: "docker".into(),
            worker_id: "a\"b\\c".into(),
        },
        0,
    );
    let text = m.render();
    assert!(text.contains(
        "oz_worker_info{backend=\"docker\",otel_scope_name=\"github.com/warpdotdev/oz-agent-worker\",otel_scope_schema_url=\"\",otel_scope_version=\"\",version=\"\",worker_id=\"a\\\"b\\\\c\"} 1\n"
    ));
    assert!(text.ends_with(
        "target_info{service_name=\"oz-agent-worker\",telemetry_sdk_language=\"rust\",telemetry_sdk_name=\"oz-agent-worker\",telemetry_sdk_version=\"0.1.0\",worker_backend=\"docker\",worker_id=\"a\\\"b\\\\c\"} 1\n"
    ));
}

#[test]
fn adopted_tasks_are_counted_once_there_is_one() {
    let m = metrics();
    assert!(!m.render().contains("oz_worker_tasks_adopted_total"));
    let obs: &dyn DispatchObserver = &m;
    obs.adopted();
    obs.adopted();
    let scrape = m.render();
    assert!(scrape.contains("# TYPE oz_worker_tasks_adopted_total counter\n"));
    assert!(scrape.contains(
        "oz_worker_tasks_adopted_total{otel_scope_name=\"github.com/warpdotdev/oz-agent-worker\",otel_scope_schema_url=\"\",otel_scope_version=\"\"} 2\n"
    ), "{scrape}");
}

#[test]
fn retention_counts_appear_once_it_removed_something() {
    let m = metrics();
    let before = m.render();
    assert!(!before.contains("oz_worker_retention_"), "{before}");
    m.retention_removed(2, 0, 1000);
    m.retention_removed(1, 1, 5);
    let scrape = m.render();
    let scope = "otel_scope_name=\"github.com/warpdotdev/oz-agent-worker\",otel_scope_schema_url=\"\",otel_scope_version=\"\"";
    assert!(
        scrape.contains("# TYPE oz_worker_retention_removed_total counter\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains(&format!(
            "oz_worker_retention_removed_total{{kind=\"image\",{scope}}} 1\n"
        )),
        "{scrape}"
    );
    assert!(
        scrape.contains(&format!(
            "oz_worker_retention_removed_total{{kind=\"sidecar_volume\",{scope}}} 3\n"
        )),
        "{scrape}"
    );
    assert!(
        scrape.contains(&format!(
            "oz_worker_retention_freed_bytes_total{{{scope}}} 1005\n"
        )),
        "{scrape}"
    );
}
