//! One OTLP/HTTP export: a `POST` of an encoded (optionally gzipped) body,
//! over the same socket code as the WebSocket ([`net::open_stream`]):
//! the same `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` rules and the same trust
//! roots (Web PKI plus `SSL_CERT_FILE`/`SSL_CERT_DIR`), or only the CAs of
//! `OTEL_EXPORTER_OTLP_CERTIFICATE` when it is set, as in Go.
//!
//! Owns the request bytes and judging the answer (read with the crate's
//! codec, [`crate::http`]); one request per connection (`Connection:
//! close`), everything bounded by the timeout.
//! Header values (often an API key) never appear in an error.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use crate::http::{self as codec, Framing, HeadStatus};
use crate::net::{self, NetError, Peer, ProxyError, ProxySettings, ProxyUrl};

use super::config::{HttpUrl, OtlpSettings, Protocol};

/// Response bytes read at most (the head and an error body's start).
const MAX_RESPONSE: usize = 16 * 1024;
/// Headers the worker writes itself; an operator's header of that name is
/// dropped so it cannot break the request's framing.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
];

/// Why an export did not reach the collector.
#[derive(Debug)]
pub enum PushError {
    /// No connection (DNS, TCP, proxy or TLS).
    Net(NetError),
    /// The connection broke or stalled.
    Io(io::Error),
    /// The whole request took longer than the timeout.
    Timeout(Duration),
    /// The collector answered with a status other than 2xx.
    Status {
        /// Status code.
        code: u16,
        /// The start of its body, escaped.
        body: String,
    },
    /// The answer was not HTTP.
    Garbled,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(e) => e.fmt(f),
            Self::Io(e) => write!(f, "the connection failed: {e}"),
            Self::Timeout(t) => write!(f, "no answer within {} ms", t.as_millis()),
            Self::Status { code, body } if body.is_empty() => {
                write!(f, "the collector answered HTTP {code}")
            }
            Self::Status { code, body } => {
                write!(f, "the collector answered HTTP {code}: {body}")
            }
            Self::Garbled => f.write_str("the answer was not an HTTP response"),
        }
    }
}

impl std::error::Error for PushError {}

impl PushError {
    /// What makes two failures "the same" for the one-WARN rule: the status
    /// for an HTTP answer (its body may carry a request id or a time), the
    /// whole text otherwise.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { code, .. } => format!("HTTP {code}"),
            other => other.to_string(),
        }
    }
}

/// Why a signal's exports cannot go where its settings say: the proxy
/// chosen for the endpoint is unusable.
#[derive(Debug)]
pub struct TargetError {
    /// The endpoint as logged (no query string).
    pub endpoint: String,
    /// What is wrong with the proxy.
    pub proxy: ProxyError,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the proxy for {}: {}", self.endpoint, self.proxy)
    }
}

/// The cause is in the `Display` text, so `source()` stays `None`.
impl std::error::Error for TargetError {}

/// Where one signal's exports go, ready to send.
pub struct Target {
    peer: Peer,
    shown: String,
    proxy: Option<ProxyUrl>,
    tls: Arc<ClientConfig>,
    head: String,
    gzip: bool,
    timeout: Duration,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("url", &self.shown).finish()
    }
}

impl Target {
    /// A target for `settings`, through `proxies`, trusting `tls`'s roots.
    pub fn new(
        settings: &OtlpSettings,
        proxies: &ProxySettings,
        tls: Arc<ClientConfig>,
    ) -> Result<Target, TargetError> {
        let peer = peer(&settings.endpoint);
        let proxy = match proxies.proxy_for(&peer) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(proxy)) => {
                return Err(TargetError {
                    endpoint: settings.endpoint.shown(),
                    proxy,
                });
            }
        };
        Ok(Target {
            head: request_head(settings),
            shown: settings.endpoint.shown(),
            peer,
            proxy,
            tls,
            gzip: settings.gzip,
            timeout: settings.timeout,
        })
    }

    /// The URL as logged (no query string).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Posts `body`, waiting at most `budget` (and the configured timeout).
    pub fn post(&self, body: &[u8], budget: Duration) -> Result<(), PushError> {
        let timeout = self.timeout.min(budget).max(Duration::from_millis(1));
        let deadline = Instant::now() + timeout;
        let compressed;
        let body = if self.gzip {
            compressed = super::gzip::gzip(body);
            &compressed[..]
        } else {
            body
        };
        let mut stream = net::open_stream(&self.peer, self.proxy.as_ref(), &self.tls, timeout)
            .map_err(PushError::Net)?;
        let mut request = self.head.clone().into_bytes();
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        stream
            .write_all(&request)
            .map_err(|e| io_error(e, timeout))?;
        stream.flush().map_err(|e| io_error(e, timeout))?;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() >= deadline {
                return Err(PushError::Timeout(timeout));
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.len() >= MAX_RESPONSE || complete(&response) {
                        break;
                    }
                }
                Err(e) => return Err(io_error(e, timeout)),
            }
        }
        check_response(&response)
    }
}

fn io_error(e: io::Error, timeout: Duration) -> PushError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PushError::Timeout(timeout),
        _ => PushError::Io(e),
    }
}

fn peer(e: &HttpUrl) -> Peer {
    Peer {
        secure: e.secure,
        host: e.host.clone(),
        port: e.port,
    }
}

/// Everything before `Content-Length`.
fn request_head(settings: &OtlpSettings) -> String {
    let url = &settings.endpoint;
    let target = if url.query.is_empty() {
        url.path.clone()
    } else {
        format!("{}?{}", url.path, url.query)
    };
    let content_type = match settings.protocol {
        Protocol::Protobuf => "application/x-protobuf",
        Protocol::Json => "application/json",
    };
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n",
        net::authority(&url.host, url.port)
    );
    if settings.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    let mut agent = true;
    for (name, value) in &settings.headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            continue;
        }
        agent &= lower != "user-agent";
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if agent {
        head.push_str(&format!(
            "User-Agent: oz-agent-worker/{}\r\n",
            crate::build_info::VERSION
        ));
    }
    head
}

/// The head has arrived and, when it gives a length, the whole body.
fn complete(response: &[u8]) -> bool {
    let Ok(HeadStatus::Complete(head, used)) = codec::parse_head(response) else {
        return false;
    };
    match codec::response_framing("POST", &head) {
        Ok(Framing::Length(n)) => (response.len() - used) as u64 >= n,
        _ => false,
    }
}

/// `Ok` for a 2xx status line; the error names the status and the body's start.
pub fn check_response(response: &[u8]) -> Result<(), PushError> {
    let (code, body) = match codec::parse_head(response) {
        Ok(HeadStatus::Complete(head, used)) => (head.status, &response[used..]),
        // Cut short before the blank line (the size cap, or a collector that
        // hung up) or a header the codec refuses: the status line decides.
        _ => {
            let line_end = response
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or(PushError::Garbled)?;
            let line =
                std::str::from_utf8(&response[..line_end]).map_err(|_| PushError::Garbled)?;
            let status = codec::parse_status_line(line).map_err(|_| PushError::Garbled)?;
            (status.status, &[][..])
        }
    };
    if (200..300).contains(&code) {
        return Ok(());
    }
    // Masked before it is cut short: a collector that echoes the request
    // would otherwise show the start of a header value past the mask.
    let masked = crate::logging::redact(&String::from_utf8_lossy(body));
    let text: String = masked.trim().chars().take(200).collect();
    Err(PushError::Status {
        code,
        body: text.escape_debug().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::config::parse_endpoint;

    fn settings(gzip: bool, headers: &[(&str, &str)]) -> OtlpSettings {
        OtlpSettings {
            endpoint: parse_endpoint("http://collector:4318/v1/metrics?tenant=a").unwrap(),
            protocol: Protocol::Protobuf,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout: Duration::from_secs(10),
            gzip,
            certificate: None,
        }
    }

    #[test]
    fn the_request_head_carries_the_operator_headers_but_not_over_the_framing() {
        let s = settings(true, &[("api-key", "s3cret"), ("Content-Length", "1")]);
        let head = request_head(&s);
        assert_eq!(
            head,
            format!(
                "POST /v1/metrics?tenant=a HTTP/1.1\r\nHost: collector:4318\r\nContent-Type: application/x-protobuf\r\nConnection: close\r\nContent-Encoding: gzip\r\napi-key: s3cret\r\nUser-Agent: oz-agent-worker/{}\r\n",
                crate::build_info::VERSION
            )
        );
        let s = settings(false, &[("User-Agent", "mine")]);
        let head = request_head(&s);
        assert!(
            head.ends_with("Connection: close\r\nUser-Agent: mine\r\n"),
            "{head}"
        );
    }

    #[test]
    fn responses_are_judged_by_their_status() {
        assert!(check_response(b"HTTP/1.1 200 OK\r\n\r\n").is_ok());
        assert!(check_response(b"HTTP/1.0 204 No Content\r\n\r\n").is_ok());
        let e = check_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nbusy\x1b[2J\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the collector answered HTTP 503: busy\\u{1b}[2J"
        );
        assert!(matches!(
            check_response(b"SSH-2.0\r\n"),
            Err(PushError::Garbled)
        ));
        assert!(matches!(check_response(b""), Err(PushError::Garbled)));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no"));
    }
}
