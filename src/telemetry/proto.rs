//! OTLP over protobuf: the few messages the worker sends
//! (`ExportMetricsServiceRequest`, `ExportTraceServiceRequest`), written by
//! hand from the field numbers of opentelemetry-proto v1.
//!
//! Owns the wire encoding only (varints, length-delimited fields, packed
//! repeats). A hand-written encoder of these messages is a few hundred
//! bytes of code against tens of kilobytes for a protobuf crate and its
//! generated types. Fields in a `oneof` or marked `optional` are written
//! even when zero (their presence is meaningful); other zero scalars are
//! left out, as proto3 does. Pure.

use crate::metrics::snapshot::unix_nanos;
use crate::metrics::{Family, Instrument, Resource, SCOPE_NAME, Snapshot, Value};

use super::trace::{AttrValue, SpanData, Status};

/// Protobuf bytes being written.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

impl Writer {
    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    fn bool(&mut self, field: u32, v: bool) {
        self.uint(field, u64::from(v));
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.key(field, FIXED32);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A double with presence (`optional` or `oneof`): written even when 0.
    fn double_present(&mut self, field: u32, v: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes_present(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.bytes_present(field, b);
        }
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// A nested message (always written: an empty message still says "present").
    fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        f(&mut inner);
        self.bytes_present(field, &inner.buf);
    }

    fn packed_fixed64(&mut self, field: u32, vs: &[u64]) {
        if !vs.is_empty() {
            self.key(field, LEN);
            self.varint(vs.len() as u64 * 8);
            for v in vs {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn packed_double(&mut self, field: u32, vs: &[f64]) {
        if !vs.is_empty() {
            self.key(field, LEN);
            self.varint(vs.len() as u64 * 8);
            for v in vs {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value = 1;
/// bool_value = 2; int_value = 3 }` (a oneof: written even when empty).
fn key_value(w: &mut Writer, field: u32, key: &str, value: &AttrValue) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |v| match value {
            AttrValue::Str(s) => v.bytes_present(1, s.as_bytes()),
            AttrValue::Bool(b) => {
                v.key(2, VARINT);
                v.varint(u64::from(*b));
            }
            AttrValue::Int(i) => {
                v.key(3, VARINT);
                v.varint(*i as u64);
            }
        });
    });
}

/// `Resource { repeated KeyValue attributes = 1 }`.
fn resource(w: &mut Writer, field: u32, r: &Resource) {
    w.message(field, |res| {
        for (k, v) in &r.attributes {
            key_value(res, 1, k, &AttrValue::Str(v.clone()));
        }
    });
}

/// `InstrumentationScope { name = 1; version = 2 }`.
fn scope(w: &mut Writer, field: u32) {
    w.message(field, |s| s.string(1, SCOPE_NAME));
}

/// `ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1 }`.
pub fn metrics_request(snapshot: &Snapshot, res: &Resource) -> Vec<u8> {
    let mut w = Writer::default();
    // ResourceMetrics { resource = 1; repeated ScopeMetrics scope_metrics = 2 }
    w.message(1, |rm| {
        resource(rm, 1, res);
        // ScopeMetrics { scope = 1; repeated Metric metrics = 2 }
        rm.message(2, |sm| {
            scope(sm, 1);
            for family in &snapshot.families {
                sm.message(2, |m| metric(m, family, snapshot));
            }
        });
    });
    w.finish()
}

/// `Metric { name = 1; description = 2; unit = 3; Gauge gauge = 5; Sum sum = 7;
/// Histogram histogram = 9 }`; temporality CUMULATIVE = 2.
fn metric(m: &mut Writer, family: &Family, snapshot: &Snapshot) {
    m.string(1, family.name);
    m.string(2, family.help);
    m.string(3, family.unit);
    let start = unix_nanos(snapshot.start);
    let at = unix_nanos(snapshot.at);
    let points = |d: &mut Writer| {
        for p in &family.points {
            match &p.value {
                // NumberDataPoint { start = 2; time = 3; as_int = 6 (sfixed64, oneof); attributes = 7 }
                Value::Int(v) => d.message(1, |dp| {
                    dp.fixed64(2, start);
                    dp.fixed64(3, at);
                    dp.key(6, FIXED64);
                    dp.buf.extend_from_slice(&v.to_le_bytes());
                    for (k, val) in &p.attributes {
                        key_value(dp, 7, k, &AttrValue::Str(val.clone()));
                    }
                }),
                // HistogramDataPoint { start = 2; time = 3; count = 4; sum = 5;
                // bucket_counts = 6; explicit_bounds = 7; attributes = 9; min = 11; max = 12 }
                Value::Histogram(h) => d.message(1, |dp| {
                    dp.fixed64(2, start);
                    dp.fixed64(3, at);
                    dp.fixed64(4, h.count());
                    dp.double_present(5, h.sum);
                    dp.packed_fixed64(6, &h.counts);
                    dp.packed_double(7, h.bounds);
                    for (k, val) in &p.attributes {
                        key_value(dp, 9, k, &AttrValue::Str(val.clone()));
                    }
                    dp.double_present(11, h.min);
                    dp.double_present(12, h.max);
                }),
            }
        }
    };
    match family.instrument {
        Instrument::Gauge => m.message(5, points),
        Instrument::Counter | Instrument::UpDownCounter => m.message(7, |sum| {
            points(sum);
            sum.uint(2, 2);
            sum.bool(3, family.instrument == Instrument::Counter);
        }),
        Instrument::Histogram => m.message(9, |hist| {
            points(hist);
            hist.uint(2, 2);
        }),
    }
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`.
pub fn traces_request(spans: &[SpanData], res: &Resource) -> Vec<u8> {
    let mut w = Writer::default();
    // ResourceSpans { resource = 1; repeated ScopeSpans scope_spans = 2 }
    w.message(1, |rs| {
        resource(rs, 1, res);
        // ScopeSpans { scope = 1; repeated Span spans = 2 }
        rs.message(2, |ss| {
            scope(ss, 1);
            for span in spans {
                ss.message(2, |s| encode_span(s, span));
            }
        });
    });
    w.finish()
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5; kind = 6;
/// start = 7; end = 8; attributes = 9; events = 11; status = 15; flags = 16 }`.
fn encode_span(s: &mut Writer, span: &SpanData) {
    s.bytes(1, &span.trace_id);
    s.bytes(2, &span.span_id);
    if let Some(parent) = &span.parent {
        s.bytes(4, parent);
    }
    s.string(5, span.name);
    s.uint(6, 1); // SPAN_KIND_INTERNAL
    s.fixed64(7, unix_nanos(span.start));
    s.fixed64(8, unix_nanos(span.end));
    for (k, v) in &span.attributes {
        key_value(s, 9, k, v);
    }
    // Event { time_unix_nano = 1; name = 2; attributes = 3 }
    for event in &span.events {
        s.message(11, |e| {
            e.fixed64(1, unix_nanos(event.time));
            e.string(2, event.name);
            for (k, v) in &event.attributes {
                key_value(e, 3, k, v);
            }
        });
    }
    // Status { message = 2; code = 3 } (UNSET 0, OK 1, ERROR 2)
    match &span.status {
        Status::Unset => {}
        Status::Ok => s.message(15, |st| st.uint(3, 1)),
        Status::Error(message) => s.message(15, |st| {
            st.string(2, message);
            st.uint(3, 2);
        }),
    }
    s.fixed32(16, super::trace::SPAN_FLAGS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_match_the_protobuf_encoding() {
        let mut w = Writer::default();
        w.uint(1, 150);
        w.string(2, "testing");
        w.fixed64(3, 1);
        w.uint(4, 0); // default: left out
        w.message(5, |_| {});
        assert_eq!(
            w.finish(),
            [
                0x08, 0x96, 0x01, // field 1 varint 150
                0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g', // field 2 "testing"
                0x19, 1, 0, 0, 0, 0, 0, 0, 0, // field 3 fixed64 1
                0x2a, 0x00, // field 5 empty message
            ]
        );
    }

    #[test]
    fn negative_ints_take_ten_bytes_and_packed_repeats_one_key() {
        let mut w = Writer::default();
        key_value(&mut w, 1, "k", &AttrValue::Int(-1));
        let bytes = w.finish();
        // KeyValue{key "k", value AnyValue{int_value: -1 as 10-byte varint}}
        assert_eq!(
            bytes,
            [
                0x0a, 0x10, 0x0a, 0x01, b'k', 0x12, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0x01
            ]
        );
        let mut w = Writer::default();
        w.packed_double(7, &[0.0, 5.0]);
        let b = w.finish();
        assert_eq!(&b[..2], &[0x3a, 16]);
        assert_eq!(&b[10..], &5.0f64.to_le_bytes());
    }
}
