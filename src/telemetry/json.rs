//! OTLP/JSON (`http/json`): the same two requests as [`super::proto`], in
//! the protobuf JSON mapping the OTLP specification prescribes
//! (lowerCamelCase names, 64-bit integers as decimal strings, enums as
//! numbers, trace and span ids as hex). Pure.

use serde_json::{Value as Json, json};

use crate::metrics::snapshot::unix_nanos;
use crate::metrics::{Family, Instrument, Resource, SCOPE_NAME, Snapshot, Value};

use super::trace::{AttrValue, SpanData, Status};

fn any_value(v: &AttrValue) -> Json {
    match v {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
    }
}

fn attributes<'a>(pairs: impl IntoIterator<Item = (&'a str, AttrValue)>) -> Json {
    Json::Array(
        pairs
            .into_iter()
            .map(|(k, v)| json!({ "key": k, "value": any_value(&v) }))
            .collect(),
    )
}

fn resource(r: &Resource) -> Json {
    json!({
        "attributes": attributes(
            r.attributes.iter().map(|(k, v)| (k.as_str(), AttrValue::Str(v.clone())))
        )
    })
}

/// `ExportMetricsServiceRequest` as OTLP/JSON.
pub fn metrics_request(snapshot: &Snapshot, res: &Resource) -> Vec<u8> {
    let metrics: Vec<Json> = snapshot
        .families
        .iter()
        .map(|f| metric(f, snapshot))
        .collect();
    json!({
        "resourceMetrics": [{
            "resource": resource(res),
            "scopeMetrics": [{ "scope": { "name": SCOPE_NAME }, "metrics": metrics }]
        }]
    })
    .to_string()
    .into_bytes()
}

fn metric(family: &Family, snapshot: &Snapshot) -> Json {
    let start = unix_nanos(snapshot.start).to_string();
    let at = unix_nanos(snapshot.at).to_string();
    let points: Vec<Json> = family
        .points
        .iter()
        .map(|p| {
            let attrs = attributes(
                p.attributes
                    .iter()
                    .map(|(k, v)| (*k, AttrValue::Str(v.clone()))),
            );
            match &p.value {
                Value::Int(v) => json!({
                    "attributes": attrs,
                    "startTimeUnixNano": start,
                    "timeUnixNano": at,
                    "asInt": v.to_string(),
                }),
                Value::Histogram(h) => json!({
                    "attributes": attrs,
                    "startTimeUnixNano": start,
                    "timeUnixNano": at,
                    "count": h.count().to_string(),
                    "sum": h.sum,
                    "bucketCounts": h.counts.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "explicitBounds": h.bounds,
                    "min": h.min,
                    "max": h.max,
                }),
            }
        })
        .collect();
    let mut m = json!({ "name": family.name, "description": family.help });
    if !family.unit.is_empty() {
        m["unit"] = family.unit.into();
    }
    match family.instrument {
        Instrument::Gauge => m["gauge"] = json!({ "dataPoints": points }),
        Instrument::Counter | Instrument::UpDownCounter => {
            m["sum"] = json!({
                "dataPoints": points,
                "aggregationTemporality": 2,
                "isMonotonic": family.instrument == Instrument::Counter,
            })
        }
        Instrument::Histogram => {
            m["histogram"] = json!({ "dataPoints": points, "aggregationTemporality": 2 })
        }
    }
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ExportTraceServiceRequest` as OTLP/JSON.
pub fn traces_request(spans: &[SpanData], res: &Resource) -> Vec<u8> {
    let spans: Vec<Json> = spans.iter().map(span).collect();
    json!({
        "resourceSpans": [{
            "resource": resource(res),
            "scopeSpans": [{ "scope": { "name": SCOPE_NAME }, "spans": spans }]
        }]
    })
    .to_string()
    .into_bytes()
}

fn span(s: &SpanData) -> Json {
    let events: Vec<Json> = s
        .events
        .iter()
        .map(|e| {
            json!({
                "timeUnixNano": unix_nanos(e.time).to_string(),
                "name": e.name,
                "attributes": attributes(e.attributes.iter().map(|(k, v)| (*k, v.clone()))),
            })
        })
        .collect();
    let mut out = json!({
        "traceId": hex(&s.trace_id),
        "spanId": hex(&s.span_id),
        "name": s.name,
        "kind": 1,
        "startTimeUnixNano": unix_nanos(s.start).to_string(),
        "endTimeUnixNano": unix_nanos(s.end).to_string(),
        "attributes": attributes(s.attributes.iter().map(|(k, v)| (*k, v.clone()))),
        "events": events,
        "flags": super::trace::SPAN_FLAGS,
    });
    if let Some(parent) = &s.parent {
        out["parentSpanId"] = hex(parent).into();
    }
    match &s.status {
        Status::Unset => {}
        Status::Ok => out["status"] = json!({ "code": 1 }),
        Status::Error(m) => out["status"] = json!({ "code": 2, "message": m }),
    }
    out
}
