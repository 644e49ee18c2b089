//! Opening one WebSocket connection: the socket from the network layer
//! ([`net::open_stream`]: TCP, directly or through an HTTP `CONNECT` proxy,
//! and TLS for `wss://`), then the WebSocket handshake with the
//! `Authorization: Bearer` header.
//!
//! Owns every reason a dial fails ([`DialError`]). Runs blocking with
//! timeouts; the caller switches the socket to non-blocking afterwards. Must
//! never put the API key or proxy credentials into an error or log line.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tungstenite::WebSocket;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::client::Response;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;

use super::url::WsUrl;
use crate::config::ApiKey;
use crate::net::{self, NetError, ProxyUrl, Stream};
use crate::wire::MAX_MESSAGE_BYTES;

/// Why a dial failed. The reconnect loop logs it and tries again later.
#[derive(Debug)]
pub enum DialError {
    /// No connection: DNS, TCP, the proxy or TLS.
    Net(NetError),
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

impl From<NetError> for DialError {
    fn from(e: NetError) -> Self {
        Self::Net(e)
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(e) => e.fmt(f),
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
    // The closing handshake, not TLS, says whether the orchestrator finished.
    let stream = net::open_stream(&p.url.peer(), p.proxy, p.tls, p.timeout)?.report_unclean_close();
    ws_handshake(p, stream)
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
