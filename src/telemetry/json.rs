//! OTLP/JSON (`http/json`): the same two requests as [`super::proto`], in
//! the protobuf JSON mapping the OTLP specification prescribes
//! (lowerCamelCase names, 64-bit integers as decimal strings, enums as
//! numbers, trace and span ids as hex). Written straight into a string: a
//! `serde_json::Value` tree of the same requests cost about 15 KB more code.
//! Pure.

use std::fmt::Write;

use crate::metrics::snapshot::unix_nanos;
use crate::metrics::{Family, Instrument, Resource, SCOPE_NAME, Snapshot, Value};

use super::trace::{AttrValue, SpanData, Status};

/// JSON text being written; commas are the caller's.
#[derive(Default)]
struct Out(String);

impl Out {
    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// A JSON string: `"`, `\` and control characters escaped.
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push('"');
        for c in s.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    /// `"key":`.
    fn key(&mut self, k: &str) -> &mut Self {
        self.str(k).raw(":")
    }

    /// A 64-bit integer, as OTLP/JSON writes them: a decimal string.
    fn int(&mut self, v: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "\"{v}\"");
        self
    }

    fn num(&mut self, v: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "{v}");
        self
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.0.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            each(self, item);
        }
        self.0.push(']');
        self
    }

    fn attributes(&mut self, pairs: &[(&str, AttrValue)]) -> &mut Self {
        self.list(pairs, |o, (k, v)| {
            o.raw("{").key("key").str(k).raw(",").key("value").raw("{");
            match v {
                AttrValue::Str(s) => o.key("stringValue").str(s),
                AttrValue::Bool(b) => o.key("boolValue").raw(if *b { "true" } else { "false" }),
                AttrValue::Int(i) => o.key("intValue").int(i),
            };
            o.raw("}}");
        })
    }

    fn resource_and_scope(&mut self, r: &Resource, items: &str) -> &mut Self {
        let attrs: Vec<(&str, AttrValue)> = r
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), AttrValue::Str(v.clone())))
            .collect();
        self.key("resource")
            .raw("{")
            .key("attributes")
            .attributes(&attrs);
        self.raw("},")
            .key(items)
            .raw("[{")
            .key("scope")
            .raw("{")
            .key("name");
        self.str(SCOPE_NAME).raw("},")
    }
}

fn str_attrs(pairs: &[(&'static str, String)]) -> Vec<(&'static str, AttrValue)> {
    pairs
        .iter()
        .map(|(k, v)| (*k, AttrValue::Str(v.clone())))
        .collect()
}

/// `ExportMetricsServiceRequest` as OTLP/JSON.
pub fn metrics_request(snapshot: &Snapshot, res: &Resource) -> Vec<u8> {
    let mut o = Out::default();
    o.raw("{").key("resourceMetrics").raw("[{");
    o.resource_and_scope(res, "scopeMetrics").key("metrics");
    o.list(&snapshot.families, |o, f| metric(o, f, snapshot));
    o.raw("}]}]}");
    o.0.into_bytes()
}

fn metric(o: &mut Out, family: &Family, snapshot: &Snapshot) {
    let start = unix_nanos(snapshot.start);
    let at = unix_nanos(snapshot.at);
    o.raw("{").key("name").str(family.name).raw(",");
    o.key("description").str(family.help).raw(",");
    if !family.unit.is_empty() {
        o.key("unit").str(family.unit).raw(",");
    }
    let kind = match family.instrument {
        Instrument::Gauge => "gauge",
        Instrument::Counter | Instrument::UpDownCounter => "sum",
        Instrument::Histogram => "histogram",
    };
    o.key(kind).raw("{").key("dataPoints");
    o.list(&family.points, |o, p| {
        o.raw("{")
            .key("attributes")
            .attributes(&str_attrs(&p.attributes));
        o.raw(",").key("startTimeUnixNano").int(start);
        o.raw(",").key("timeUnixNano").int(at).raw(",");
        match &p.value {
            Value::Int(v) => {
                o.key("asInt").int(v);
            }
            Value::Histogram(h) => {
                o.key("count").int(h.count()).raw(",");
                o.key("sum").num(h.sum).raw(",");
                o.key("bucketCounts").list(&h.counts, |o, c| {
                    o.int(c);
                });
                o.raw(",").key("explicitBounds").list(h.bounds, |o, b| {
                    o.num(b);
                });
                o.raw(",").key("min").num(h.min).raw(",");
                o.key("max").num(h.max);
            }
        }
        o.raw("}");
    });
    if family.instrument != Instrument::Gauge {
        o.raw(",").key("aggregationTemporality").raw("2");
    }
    if family.instrument == Instrument::Counter {
        o.raw(",").key("isMonotonic").raw("true");
    }
    o.raw("}}");
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `ExportTraceServiceRequest` as OTLP/JSON.
pub fn traces_request(spans: &[SpanData], res: &Resource) -> Vec<u8> {
    let mut o = Out::default();
    o.raw("{").key("resourceSpans").raw("[{");
    o.resource_and_scope(res, "scopeSpans").key("spans");
    o.list(spans, span);
    o.raw("}]}]}");
    o.0.into_bytes()
}

fn span(o: &mut Out, s: &SpanData) {
    o.raw("{").key("traceId").str(&hex(&s.trace_id)).raw(",");
    o.key("spanId").str(&hex(&s.span_id)).raw(",");
    if let Some(parent) = &s.parent {
        o.key("parentSpanId").str(&hex(parent)).raw(",");
    }
    o.key("name").str(s.name).raw(",").key("kind").raw("1,");
    o.key("startTimeUnixNano").int(unix_nanos(s.start)).raw(",");
    o.key("endTimeUnixNano").int(unix_nanos(s.end)).raw(",");
    o.key("attributes").attributes(&s.attributes).raw(",");
    o.key("events").list(&s.events, |o, e| {
        o.raw("{")
            .key("timeUnixNano")
            .int(unix_nanos(e.time))
            .raw(",");
        o.key("name").str(e.name).raw(",");
        o.key("attributes").attributes(&e.attributes).raw("}");
    });
    o.raw(",").key("flags").num(super::trace::SPAN_FLAGS);
    match &s.status {
        Status::Unset => {}
        Status::Ok => {
            o.raw(",").key("status").raw("{").key("code").raw("1}");
        }
        Status::Error(m) => {
            o.raw(",").key("status").raw("{").key("code").raw("2,");
            o.key("message").str(m).raw("}");
        }
    }
    o.raw("}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn strings_are_escaped_and_the_output_parses() {
        let mut o = Out::default();
        o.str("a\"b\\c\nd\u{1}é");
        assert_eq!(o.0, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500);
        let span = SpanData {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent: Some([2; 8]),
            name: "oz_worker.task",
            start: t,
            end: t,
            attributes: vec![("n", AttrValue::Int(-3)), ("b", AttrValue::Bool(true))],
            events: vec![],
            status: Status::Error("x\"y".into()),
        };
        let body = traces_request(&[span], &Resource::default());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "ab".repeat(16));
        assert_eq!(s["parentSpanId"], "0202020202020202");
        assert_eq!(s["startTimeUnixNano"], "1500");
        assert_eq!(s["attributes"][0]["value"]["intValue"], "-3");
        assert_eq!(s["attributes"][1]["value"]["boolValue"], true);
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["status"]["message"], "x\"y");
    }
}
