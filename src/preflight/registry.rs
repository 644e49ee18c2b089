//! Whether a mirror registry answers the Registry API: `GET /v2/` over
//! HTTPS, or plain HTTP for a registry the daemon treats as insecure
//! (loopback, its `insecure-registries`), as the daemon itself would try.
//!
//! Owns one bounded HTTP exchange per registry, read up to the status line
//! (judged by the crate's codec, [`crate::http`]; sockets and TLS come from
//! [`crate::net`]);
//! sends no credentials (a `401` means "answering, wants a login", which the
//! credential checks cover). Trust roots are the worker's own (Web PKI plus
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`); the daemon may trust more through
//! `/etc/docker/certs.d`, so an untrusted certificate is a doubt, not a
//! failure.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::docker::system::RegistryConfig;
use crate::net::cidr::Cidr;
use crate::net::{self, NetError, Stream};

/// Bound on the lookup, the connect and each read or write.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a registry answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `GET /v2/` was answered 200 or 401.
    Registry {
        /// `https` or `http`.
        scheme: &'static str,
        /// The status code.
        status: u16,
    },
    /// It speaks TLS, but with a certificate the worker does not trust.
    Untrusted {
        /// The TLS error.
        detail: String,
    },
}

/// Why a registry does not answer the Registry API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Silence {
    /// No address, no connection, or no answer in time.
    Unreachable(String),
    /// It answered, but not as a registry (e.g. 404 from a web server).
    NotARegistry {
        /// `https` or `http`.
        scheme: &'static str,
        /// The status line or what came instead.
        answer: String,
    },
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "does not answer: {e}"),
            Self::NotARegistry { scheme, answer } => {
                write!(
                    f,
                    "answered {scheme} GET /v2/ with {answer:?}, not as a registry"
                )
            }
        }
    }
}

/// Probes `registry` (`host[:port]`). `insecure` is the daemon's registry
/// configuration, which decides whether plain HTTP is tried after HTTPS.
pub fn probe(
    registry: &str,
    tls: &Arc<ClientConfig>,
    insecure: &RegistryConfig,
) -> Result<Answer, Silence> {
    let (host, port) = split(registry);
    let plain_ok = is_insecure(registry, &host, insecure);
    let https = exchange(&host, port.unwrap_or(443), Some(tls));
    match (https, plain_ok) {
        (Ok(line), _) => classify("https", &line),
        (Err(e), true) => match exchange(&host, port.unwrap_or(80), None) {
            Ok(line) => classify("http", &line),
            Err(plain) if plain.to_string() == e.to_string() => {
                Err(Silence::Unreachable(e.to_string()))
            }
            Err(plain) => Err(Silence::Unreachable(format!("https: {e}; http: {plain}"))),
        },
        (Err(e), false) if is_certificate_error(&e) => Ok(Answer::Untrusted {
            detail: e.to_string(),
        }),
        (Err(e), false) => Err(Silence::Unreachable(e.to_string())),
    }
}

fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)))
}

fn classify(scheme: &'static str, status_line: &str) -> Result<Answer, Silence> {
    let status = crate::http::parse_status_line(status_line).map(|line| line.status);
    match status {
        Ok(status @ (200 | 401)) => Ok(Answer::Registry { scheme, status }),
        _ => Err(Silence::NotARegistry {
            scheme,
            answer: status_line.chars().take(80).collect(),
        }),
    }
}

/// `host[:port]`, with `[v6]:port` and Docker Hub's API host.
fn split(registry: &str) -> (String, Option<u16>) {
    if registry == "docker.io" || registry == "index.docker.io" {
        return ("registry-1.docker.io".into(), None);
    }
    if let Some(rest) = registry.strip_prefix('[')
        && let Some((h, after)) = rest.split_once(']')
    {
        return (
            h.into(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.into(), p.parse().ok()),
        _ => (registry.into(), None),
    }
}

/// Loopback, `localhost`, an `insecure-registries` name or an address in one
/// of the daemon's insecure CIDRs: where the daemon falls back to HTTP.
pub fn is_insecure(registry: &str, host: &str, config: &RegistryConfig) -> bool {
    if host == "localhost"
        || config
            .index_configs
            .get(registry)
            .is_some_and(|c| !c.secure)
    {
        return true;
    }
    let Ok(ip) = host.parse::<IpAddr>() else {
        return false;
    };
    ip.is_loopback()
        || config
            .insecure_cidrs
            .iter()
            .any(|c| Cidr::parse(c).is_some_and(|c| c.contains(ip)))
}

/// One `GET /v2/`; returns the status line.
fn exchange(host: &str, port: u16, tls: Option<&Arc<ClientConfig>>) -> io::Result<String> {
    let tcp = connect(host, port).map_err(NetError::into_io)?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT))?;
    tcp.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let request = crate::http::request_head(
        "GET",
        "/v2/",
        &net::authority(host, port),
        &[("User-Agent", "oz-agent-worker"), ("Connection", "close")],
        crate::http::BodyFraming::None,
    );
    let stream = match tls {
        None => Stream::plain(tcp),
        Some(config) => net::tls_handshake(tcp, host, config).map_err(NetError::into_io)?,
    };
    status_line(stream, &request)
}

/// The lookup on a helper thread, so a hung resolver costs at most the
/// timeout, then each address in turn.
fn connect(host: &str, port: u16) -> Result<std::net::TcpStream, NetError> {
    let addrs = net::resolve_within(host, port, PROBE_TIMEOUT)?;
    net::connect_to(&net::authority(host, port), addrs, PROBE_TIMEOUT)
}

fn status_line(mut stream: impl Read + Write, request: &[u8]) -> io::Result<String> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        match stream.read(&mut byte)? {
            0 => break,
            _ => head.push(byte[0]),
        }
    }
    if head.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        ));
    }
    Ok(String::from_utf8_lossy(&head).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::system::IndexConfig;

    #[test]
    fn registry_names_split_into_host_and_port() {
        assert_eq!(split("mirror.lan:5000"), ("mirror.lan".into(), Some(5000)));
        assert_eq!(split("mirror.lan"), ("mirror.lan".into(), None));
        assert_eq!(split("[::1]:5000"), ("::1".into(), Some(5000)));
        assert_eq!(split("docker.io"), ("registry-1.docker.io".into(), None));
    }

    #[test]
    fn insecure_follows_the_daemon() {
        let mut config = RegistryConfig {
            insecure_cidrs: vec!["127.0.0.0/8".into(), "10.9.0.0/16".into()],
            ..RegistryConfig::default()
        };
        config
            .index_configs
            .insert("mirror.lan:5000".into(), IndexConfig { secure: false });
        assert!(is_insecure("127.0.0.1:5000", "127.0.0.1", &config));
        assert!(is_insecure("localhost:5000", "localhost", &config));
        assert!(is_insecure("10.9.3.4:5000", "10.9.3.4", &config));
        assert!(!is_insecure("10.8.3.4:5000", "10.8.3.4", &config));
        assert!(is_insecure("mirror.lan:5000", "mirror.lan", &config));
        assert!(!is_insecure("mirror.lan", "mirror.lan", &config));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            classify("http", "HTTP/1.1 401 Unauthorized"),
            Ok(Answer::Registry {
                scheme: "http",
                status: 401
            })
        );
        assert_eq!(
            classify("https", "HTTP/1.1 404 Not Found"),
            Err(Silence::NotARegistry {
                scheme: "https",
                answer: "HTTP/1.1 404 Not Found".into()
            })
        );
        assert_eq!(
            Silence::NotARegistry {
                scheme: "http",
                answer: "SSH-2.0-OpenSSH_9.2".into()
            }
            .to_string(),
            "answered http GET /v2/ with \"SSH-2.0-OpenSSH_9.2\", not as a registry"
        );
    }
}
