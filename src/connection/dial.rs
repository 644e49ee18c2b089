//! Opening one WebSocket connection: TCP (directly or through an HTTP
//! `CONNECT` proxy), TLS for `wss://`, then the WebSocket handshake with the
//! `Authorization: Bearer` header.
//!
//! Owns the socket type ([`Stream`]) and every reason a dial fails
//! ([`DialError`]). Runs blocking with timeouts; the caller switches the
//! socket to non-blocking afterwards. Must never put the API key or proxy
//! credentials into an error or log line.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use tungstenite::WebSocket;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::client::Response;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;

use super::proxy::{ProxyError, ProxyUrl, check_connect_response};
use super::url::WsUrl;
use crate::config::ApiKey;
use crate::wire::MAX_MESSAGE_BYTES;

/// The byte stream under the WebSocket: plain TCP or TLS over TCP.
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// Why a dial failed. The reconnect loop logs it and tries again later.
#[derive(Debug)]
pub enum DialError {
    /// The host name did not resolve.
    Resolve {
        /// `host:port` looked up.
        target: String,
        /// The resolver's words.
        source: io::Error,
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
    /// The orchestrator answered the upgrade with an HTTP error status.
    Rejected {
        /// HTTP status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The WebSocket handshake did not finish in time.
    HandshakeTimeout,
    /// The WebSocket handshake failed some other way.
    Handshake(tungstenite::Error),
}

impl DialError {
    /// The HTTP status when the orchestrator refused the handshake.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve { target, source } => write!(f, "could not resolve {target}: {source}"),
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
            Self::Rejected {
                status: status @ (401 | 403),
                reason,
            } => write!(
                f,
                "the orchestrator refused the connection with HTTP {status} {reason}: the API key is wrong or lacks team scope"
            ),
            Self::Rejected { status, reason } => write!(
                f,
                "the orchestrator refused the WebSocket handshake with HTTP {status} {reason}"
            ),
            Self::HandshakeTimeout => f.write_str("the WebSocket handshake timed out"),
            Self::Handshake(e) => write!(f, "the WebSocket handshake failed: {e}"),
        }
    }
}

impl std::error::Error for DialError {}

/// Everything one dial needs.
pub struct DialParams<'a> {
    /// The URL, `worker_id` already in its query.
    pub url: &'a WsUrl,
    /// Sent as `Authorization: Bearer`.
    pub api_key: &'a ApiKey,
    /// Tunnel through this proxy when set.
    pub proxy: Option<&'a ProxyUrl>,
    /// TLS settings for `wss://`.
    pub tls: &'a Arc<ClientConfig>,
    /// Bound on the TCP connect, and on each read/write of the handshakes.
    pub timeout: Duration,
}

/// Dials and completes every handshake; the socket is left blocking.
pub fn dial(p: &DialParams<'_>) -> Result<WebSocket<Stream>, DialError> {
    dial_with_response(p).map(|(ws, _response)| ws)
}

/// [`dial`], also returning the orchestrator's `101` response (the doctor
/// reads its `Date` header to check the clock).
pub fn dial_with_response(p: &DialParams<'_>) -> Result<(WebSocket<Stream>, Response), DialError> {
    let stream = open_stream(p.url, p.proxy, p.tls, p.timeout)?;
    ws_handshake(p, stream)
}

/// TCP to `url`'s host (directly or through a `CONNECT` tunnel) and, for a
/// secure URL, TLS: the socket under the WebSocket, and under the OTLP push,
/// so both go through the same proxy rules and trust the same roots.
pub fn open_stream(
    url: &WsUrl,
    proxy: Option<&ProxyUrl>,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Stream, DialError> {
    let tcp = match proxy {
        Some(proxy) => tunnel(proxy, &url.authority(), timeout)?,
        None => connect_tcp(&url.host, url.port, timeout)?,
    };
    let io_err = |source| DialError::Connect {
        target: url.authority(),
        source,
    };
    tcp.set_read_timeout(Some(timeout)).map_err(io_err)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let _ = tcp.set_nodelay(true);
    Ok(if url.secure {
        Stream::Tls(Box::new(tls_handshake(tcp, &url.host, tls)?))
    } else {
        Stream::Plain(tcp)
    })
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, DialError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| DialError::Resolve {
            target: target.clone(),
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(DialError::Connect {
        target,
        source: last,
    })
}

/// Opens a `CONNECT` tunnel to `target` through `proxy`.
fn tunnel(proxy: &ProxyUrl, target: &str, timeout: Duration) -> Result<TcpStream, DialError> {
    let name = proxy.to_string();
    let mut tcp = connect_tcp(&proxy.host, proxy.port, timeout)?;
    let io_err = |source| DialError::ProxyIo {
        proxy: name.clone(),
        source,
    };
    tcp.set_read_timeout(Some(timeout)).map_err(io_err)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io_err)?;
    tcp.write_all(&proxy.connect_request(target))
        .map_err(io_err)?;
    // Byte at a time: nothing after the blank line may be consumed, it belongs to TLS.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(DialError::Proxy {
                proxy: name,
                error: ProxyError::Garbled,
            });
        }
        match tcp.read(&mut byte).map_err(io_err)? {
            0 => {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection",
                )));
            }
            _ => head.push(byte[0]),
        }
    }
    check_connect_response(&head).map_err(|error| DialError::Proxy { proxy: name, error })?;
    Ok(tcp)
}

fn tls_handshake(
    mut tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, DialError> {
    let tls_err = |source| DialError::Tls {
        host: host.to_owned(),
        source,
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| tls_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| tls_err(io::Error::other(e)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(tls_err)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

fn ws_handshake(
    p: &DialParams<'_>,
    stream: Stream,
) -> Result<(WebSocket<Stream>, Response), DialError> {
    let mut request = p
        .url
        .to_string()
        .into_client_request()
        .map_err(DialError::Handshake)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", p.api_key.expose()))
        .map_err(|e| DialError::Handshake(e.into()))?;
    request.headers_mut().insert("Authorization", bearer);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    match tungstenite::client::client_with_config(request, stream, Some(config)) {
        Ok(pair) => Ok(pair),
        Err(HandshakeError::Interrupted(_)) => Err(DialError::HandshakeTimeout),
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(DialError::Rejected {
            status: resp.status().as_u16(),
            reason: resp.status().canonical_reason().unwrap_or("").to_owned(),
        }),
        Err(HandshakeError::Failure(e)) => Err(DialError::Handshake(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_messages_name_the_key_problem() {
        let e = DialError::Rejected {
            status: 401,
            reason: "Unauthorized".into(),
        };
        assert_eq!(
            e.to_string(),
            "the orchestrator refused the connection with HTTP 401 Unauthorized: the API key is wrong or lacks team scope"
        );
        assert_eq!(e.status(), Some(401));
        let e = DialError::Rejected {
            status: 502,
            reason: "Bad Gateway".into(),
        };
        assert_eq!(
            e.to_string(),
            "the orchestrator refused the WebSocket handshake with HTTP 502 Bad Gateway"
        );
    }
}
