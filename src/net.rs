//! The crate's network layer: every TCP connection and TLS handshake the
//! worker makes goes through here.
//!
//! Owns, in one place each: looking a name up on a helper thread with a
//! deadline ([`resolve_within`]), connecting with a timeout to each resolved
//! address in turn ([`connect`], [`connect_to`]), the trust roots and the
//! rustls client configuration ([`load_roots`], [`client_config`]), the
//! client handshake and the plain/TLS byte stream ([`tls_handshake`],
//! [`Stream`], with the rule for a peer that closes without
//! `close_notify`), the proxy rules and the `CONNECT` tunnel ([`proxy`],
//! [`open_stream`]), the one CIDR matcher ([`cidr`]), and every reason a
//! connection fails ([`NetError`]).
//!
//! Its users sit on top: the WebSocket (`connection`), the Docker client for
//! tcp and TLS daemons (`docker/transport.rs`), the OTLP exporter
//! (`telemetry`), the registry probe (`preflight`) and `doctor`. It speaks no
//! protocol itself beyond `CONNECT` (whose answer the codec in
//! [`crate::http`] reads), logs nothing, and must never put proxy
//! credentials into an error.

pub mod cidr;
pub mod proxy;
mod stream;
mod tcp;
pub mod tls;

use std::fmt;
use std::io;
use std::time::Duration;

pub use proxy::{NoProxy, ProxyError, ProxySettings, ProxyUrl, UnusableProxy, open_stream};
pub use stream::{Stream, tls_handshake};
pub use tcp::{connect, connect_to, resolve_within};
pub use tls::{RootProblem, RootSource, TlsSetupError, client_config, load_roots};

/// Where a connection goes: a host, a port, and whether TLS runs over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// TLS over the TCP connection (`wss://`, `https://`).
    pub secure: bool,
    /// Host name or IP address, without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Peer {
    /// `host:port` as a `CONNECT` target or `Host` value (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why no connection was made. The Display is one plain line; callers that
/// word the failure themselves take the cause with [`NetError::into_io`].
#[derive(Debug)]
pub enum NetError {
    /// The host name did not resolve.
    Resolve {
        /// `host:port` looked up.
        target: String,
        /// The resolver's words.
        source: io::Error,
    },
    /// The lookup did not answer within its deadline.
    ResolveTimeout {
        /// The host looked up.
        host: String,
        /// The deadline.
        after: Duration,
    },
    /// No address of the host (or proxy) accepted a TCP connection.
    Connect {
        /// `host:port` dialled.
        target: String,
        /// The last address's error.
        source: io::Error,
    },
    /// The proxy is unusable or refused the tunnel.
    Proxy {
        /// The proxy, without credentials.
        proxy: String,
        /// What went wrong.
        error: ProxyError,
    },
    /// Talking to the proxy failed.
    ProxyIo {
        /// The proxy, without credentials.
        proxy: String,
        /// The system's words.
        source: io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, protocol error, …).
    Tls {
        /// The host the certificate should name.
        host: String,
        /// rustls's or the system's words.
        source: io::Error,
    },
}

impl NetError {
    /// The cause alone, for callers that word the failure themselves (the
    /// Docker client, the registry probe): the system's or rustls's error
    /// where there is one (a certificate error stays downcastable to
    /// `rustls::Error`), else this error's words.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Resolve { source, .. }
            | Self::Connect { source, .. }
            | Self::ProxyIo { source, .. }
            | Self::Tls { source, .. } => source,
            timeout @ Self::ResolveTimeout { .. } => {
                io::Error::new(io::ErrorKind::TimedOut, timeout.to_string())
            }
            proxy @ Self::Proxy { .. } => io::Error::other(proxy.to_string()),
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve { target, source } => write!(f, "could not resolve {target}: {source}"),
            Self::ResolveTimeout { host, after } => {
                write!(f, "looking up {host} took longer than {after:?}")
            }
            Self::Connect { target, source } => {
                write!(f, "could not connect to {target}: {source}")
            }
            Self::Proxy { proxy, error } => write!(f, "proxy {proxy}: {error}"),
            Self::ProxyIo { proxy, source } => {
                write!(f, "proxy {proxy}: the CONNECT exchange failed: {source}")
            }
            Self::Tls { host, source } => write!(
                f,
                "TLS handshake with {host} failed: {source} (behind a TLS-intercepting proxy? add its CA with SSL_CERT_FILE or SSL_CERT_DIR)"
            ),
        }
    }
}

impl std::error::Error for NetError {}

/// Splits `host[:port]` / `[v6][:port]`; `None` for a `[` without its `]`.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').filter(|p| !p.is_empty());
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => Some((h, Some(p))),
        Some((h, _)) => Some((h, None)),
        None => Some((authority, None)),
    }
}

/// Decodes `%XX` and `+`; a malformed escape is kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex_pair(bytes[i + 1], bytes[i + 2]).is_some() => {
                out.extend(hex_pair(bytes[i + 1], bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let h = (a as char).to_digit(16)?;
    let l = (b as char).to_digit(16)?;
    Some((h * 16 + l) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
