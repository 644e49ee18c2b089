//! Exact settings for the OpenTelemetry variables, as the Go exporter reads them.

use super::*;

fn read(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    from_env(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

fn metrics_url(vars: &[(&str, &str)]) -> String {
    read(vars)
        .unwrap()
        .metrics
        .unwrap()
        .otlp
        .unwrap()
        .endpoint
        .url()
}

#[test]
fn unset_means_otlp_to_localhost_every_minute() {
    let cfg = read(&[]).unwrap();
    let m = cfg.metrics.unwrap();
    let otlp = m.otlp.unwrap();
    assert_eq!(otlp.endpoint.url(), "http://localhost:4318/v1/metrics");
    assert_eq!(otlp.protocol, Protocol::Protobuf);
    assert_eq!(otlp.timeout, Duration::from_secs(10));
    assert!(!otlp.gzip);
    assert!(otlp.headers.is_empty());
    assert_eq!(m.interval, Duration::from_secs(60));
    assert_eq!(m.timeout, Duration::from_secs(30));
    assert!(!m.console);
    assert_eq!(cfg.traces, None);
    assert!(cfg.warnings.is_empty());
}

#[test]
fn exporter_lists() {
    assert_eq!(
        read(&[("OTEL_METRICS_EXPORTER", "none")]).unwrap().metrics,
        None
    );
    assert_eq!(
        read(&[("OTEL_METRICS_EXPORTER", "prometheus")])
            .unwrap()
            .metrics,
        None
    );
    let both = read(&[("OTEL_METRICS_EXPORTER", " prometheus , otlp,console ")]).unwrap();
    let m = both.metrics.unwrap();
    assert!(m.otlp.is_some() && m.console);
    let console = read(&[("OTEL_METRICS_EXPORTER", "console")])
        .unwrap()
        .metrics
        .unwrap();
    assert!(console.otlp.is_none() && console.console);
    assert_eq!(
        read(&[("OTEL_METRICS_EXPORTER", "otlp,zipkin")])
            .unwrap_err()
            .to_string(),
        "OTEL_METRICS_EXPORTER lists \"zipkin\", which this worker does not have; use otlp, prometheus, console or none"
    );
    assert_eq!(
        read(&[("OTEL_TRACES_EXPORTER", "jaeger")])
            .unwrap_err()
            .to_string(),
        "OTEL_TRACES_EXPORTER lists \"jaeger\", which this worker does not have; use otlp, console or none"
    );
    assert_eq!(
        read(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().traces,
        None
    );
    let t = read(&[("OTEL_TRACES_EXPORTER", "otlp")])
        .unwrap()
        .traces
        .unwrap();
    assert_eq!(
        t.otlp.unwrap().endpoint.url(),
        "http://localhost:4318/v1/traces"
    );
    assert_eq!(
        t.batch,
        BatchSettings {
            schedule_delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(30),
            max_queue: 2048,
            max_batch: 512,
        }
    );
}

#[test]
fn grpc_is_refused_with_the_protocols_that_work() {
    assert_eq!(
        read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .unwrap_err()
            .to_string(),
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this worker pushes OTLP over HTTP only; set http/protobuf (the collector's port 4318) or http/json, or OTEL_METRICS_EXPORTER=none to export nothing"
    );
    // The per-signal variable wins over the general one.
    let ok = read(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
    ])
    .unwrap();
    assert_eq!(ok.metrics.unwrap().otlp.unwrap().protocol, Protocol::Json);
    assert_eq!(
        read(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "thrift")])
            .unwrap_err()
            .to_string(),
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=\"thrift\" is not an OTLP protocol this worker speaks; use http/protobuf or http/json"
    );
    // Not asked for, not checked: grpc for traces does not stop metrics.
    assert!(read(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")]).is_ok());
}

#[test]
fn endpoint_path_rules_follow_the_spec() {
    let base = |v| metrics_url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", v)]);
    assert_eq!(base("http://c:4318"), "http://c:4318/v1/metrics");
    assert_eq!(base("http://c:4318/"), "http://c:4318/v1/metrics");
    assert_eq!(base("https://c/otlp"), "https://c:443/otlp/v1/metrics");
    assert_eq!(base("http://c:4318/otlp/"), "http://c:4318/otlp/v1/metrics");
    assert_eq!(
        base("HTTP://[::1]:9/a?x=1"),
        "http://[::1]:9/a/v1/metrics?x=1"
    );
    let signal = |v| {
        metrics_url(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", v),
        ])
    };
    assert_eq!(signal("http://c:4318"), "http://c:4318/");
    assert_eq!(signal("http://c:4318/custom"), "http://c:4318/custom");
    assert_eq!(
        signal("http://u:p@c:4318/v1/metrics#f"),
        "http://c:4318/v1/metrics"
    );
    let shown = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1/p?token=s3cret")])
        .unwrap()
        .metrics
        .unwrap()
        .otlp
        .unwrap()
        .endpoint
        .shown();
    assert_eq!(shown, "http://c:1/p/v1/metrics");
}

#[test]
fn bad_endpoints_are_refused() {
    let err = |v| {
        read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", v)])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("localhost:4318"),
        "OTEL_EXPORTER_OTLP_ENDPOINT is not an http:// or https:// URL; write a URL such as http://collector:4318"
    );
    assert_eq!(
        err("http://c:99999"),
        "OTEL_EXPORTER_OTLP_ENDPOINT has a port that is not a number from 0 to 65535; write a URL such as http://collector:4318"
    );
    assert_eq!(
        err("http:///v1"),
        "OTEL_EXPORTER_OTLP_ENDPOINT has no host; write a URL such as http://collector:4318"
    );
    assert_eq!(
        read(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "grpc://c")])
            .unwrap_err()
            .to_string(),
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is not an http:// or https:// URL; write a URL such as http://collector:4318"
    );
}

#[test]
fn headers_are_parsed_as_go_does_and_never_echoed() {
    let mut warnings = Vec::new();
    let h = parse_headers(
        "OTEL_EXPORTER_OTLP_HEADERS",
        " api-key = s3cr%20et ,bad key=v1,novalue,X-Tenant=a%2Cb,x=%zzsecret,api-key=second,crlf=a%0d%0aInjected: 1",
        &mut warnings,
    );
    assert_eq!(
        h,
        vec![
            ("X-Tenant".to_string(), "a,b".to_string()),
            ("api-key".to_string(), "second".to_string()),
        ]
    );
    assert_eq!(
        warnings,
        vec![
            "OTEL_EXPORTER_OTLP_HEADERS: entry 2 has a header name that is not an HTTP token; it is skipped",
            "OTEL_EXPORTER_OTLP_HEADERS: entry 3 has no `=`; it is skipped",
            "OTEL_EXPORTER_OTLP_HEADERS: entry 5 (x) has a bad %-escape in its value; it is skipped",
            "OTEL_EXPORTER_OTLP_HEADERS: entry 7 (crlf) has a line break in its value; it is skipped",
        ]
    );
    for w in &warnings {
        assert!(!w.contains("secret") && !w.contains("s3cr"), "{w}");
    }
    // Per-signal headers replace the general ones entirely.
    let cfg = read(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "c=3"),
    ])
    .unwrap();
    assert_eq!(
        cfg.metrics.unwrap().otlp.unwrap().headers,
        vec![("c".to_string(), "3".to_string())]
    );
}

#[test]
fn numbers_compression_and_temporality_fall_back_with_a_warning() {
    let cfg = read(&[
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ("OTEL_METRIC_EXPORT_TIMEOUT", "-5"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
    ])
    .unwrap();
    let m = cfg.metrics.unwrap();
    let otlp = m.otlp.unwrap();
    assert_eq!(otlp.timeout, Duration::from_secs(10));
    assert!(otlp.gzip);
    assert_eq!(otlp.certificate, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(m.interval, Duration::from_millis(250));
    assert_eq!(m.timeout, Duration::from_secs(30));
    assert_eq!(
        cfg.warnings,
        vec![
            "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\" is not a positive whole number of milliseconds; using 10000 ms",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=\"delta\": this worker pushes cumulative sums and histograms only",
            "OTEL_METRIC_EXPORT_TIMEOUT=\"-5\" is not a positive whole number of milliseconds; using 30000 ms",
        ]
    );
    let cfg = read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).unwrap();
    assert!(!cfg.metrics.unwrap().otlp.unwrap().gzip);
    assert_eq!(
        cfg.warnings,
        vec![
            "OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\" is not a compression this worker knows; sending uncompressed (use gzip or none)"
        ]
    );
}

#[test]
fn batch_settings_are_read_and_bounded() {
    let t = read(&[
        ("OTEL_TRACES_EXPORTER", "console"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50"),
    ])
    .unwrap()
    .traces
    .unwrap();
    assert!(t.console && t.otlp.is_none());
    assert_eq!(t.batch.schedule_delay, Duration::from_millis(100));
    assert_eq!((t.batch.max_queue, t.batch.max_batch), (10, 10));
}

#[test]
fn a_line_break_in_headers_or_endpoint_stops_the_start() {
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=b%0d%0aX-Injected: 1"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=b\nc"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "k=v%00"),
    ] {
        let e = read(&[(var, value)]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{var} holds a CR, LF or NUL character (as written or %-encoded), which would forge headers of the OTLP request; remove it"
            )
        );
    }
    let e = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318\r\nX: 1")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "OTEL_EXPORTER_OTLP_ENDPOINT holds a control character (CR, LF, NUL, …), which would split the HTTP request; write a URL such as http://collector:4318"
    );
}
