//! The `OTEL_EXPORTER_OTLP_*HEADERS` lists, read as the Go exporter reads
//! them. Warnings name an entry's position or key, never its value (it
//! often carries credentials).

/// `key=value,key2=value2`, values percent-decoded, as the Go exporter reads
/// them: an entry without `=`, with a key that is not an HTTP token, or
/// with a bad escape is skipped. Warnings name the entry's position, never
/// its value.
pub fn parse_headers(var: &str, value: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, entry) in value.split(',').enumerate() {
        let n = i + 1;
        let Some((k, v)) = entry.split_once('=') else {
            warnings.push(format!("{var}: entry {n} has no `=`; it is skipped"));
            continue;
        };
        let key = k.trim();
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            warnings.push(format!(
                "{var}: entry {n} has a header name that is not an HTTP token; it is skipped"
            ));
            continue;
        }
        let Some(decoded) = crate::metrics::resource::percent_decode(v) else {
            warnings.push(format!(
                "{var}: entry {n} ({key}) has a bad %-escape in its value; it is skipped"
            ));
            continue;
        };
        let decoded = decoded.trim().to_owned();
        if decoded.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            warnings.push(format!(
                "{var}: entry {n} ({key}) has a line break in its value; it is skipped"
            ));
            continue;
        }
        // Later entries replace earlier ones, as in Go's map.
        out.retain(|(name, _)| !name.eq_ignore_ascii_case(key));
        out.push((key.to_owned(), decoded));
    }
    out
}

/// Whether a headers variable holds a CR, LF or NUL, as written or in an
/// entry's %-decoded value.
pub(super) fn breaks_a_line(value: &str) -> bool {
    let bad = |t: &str| t.contains(['\r', '\n', '\0']);
    bad(value)
        || value.split(',').any(|entry| {
            entry
                .split_once('=')
                .and_then(|(_, v)| crate::metrics::resource::percent_decode(v))
                .is_some_and(|v| bad(&v))
        })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
