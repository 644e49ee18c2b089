//! The orchestrator's WebSocket URL: a small parser and query encoder.
//!
//! Owns turning `--web-socket-url` into scheme, host, port and path+query, and
//! adding `worker_id` to the query the way Go's `url.Values.Encode` does
//! (pairs sorted by key, values query-escaped). Pure: no I/O, no logging.

use std::fmt;

use crate::net::{Peer, percent_decode, split_host_port};

/// Why a WebSocket URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not `ws` or `wss`.
    Scheme(String),
    /// No host between `//` and the path.
    NoHost,
    /// The port is not a number from 1 to 65535.
    Port(String),
    /// A `[` without its closing `]`.
    Bracket,
    /// A control character (CR, LF, NUL, …): it would split the request line.
    Control,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(s) => write!(
                f,
                "the WebSocket URL must start with ws:// or wss:// (it starts with {s:?})"
            ),
            Self::NoHost => f.write_str("the WebSocket URL has no host"),
            Self::Port(p) => write!(f, "the WebSocket URL's port {p:?} is not a valid port"),
            Self::Bracket => f.write_str("the WebSocket URL has an unclosed [ in its host"),
            Self::Control => f.write_str(
                "the WebSocket URL holds a control character (CR, LF, NUL, …), which would split the handshake's request line",
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// True for `wss`.
    pub secure: bool,
    /// Host name or IP address, without brackets, lower-cased.
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
    /// Whether the URL spelled the port out.
    pub explicit_port: bool,
    /// Path, `/` when empty.
    pub path: String,
    /// Raw query without `?` (may be empty).
    pub query: String,
}

impl WsUrl {
    /// True for a `ws://` URL to a host other than this one: the handshake,
    /// `Authorization: Bearer` included, travels in clear.
    pub fn sends_key_in_clear(&self) -> bool {
        let loopback = self.host == "localhost"
            || self.host.ends_with(".localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !self.secure && !loopback
    }

    /// Parses a URL; the fragment and any userinfo are dropped.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        if text.chars().any(char::is_control) {
            return Err(UrlError::Control);
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(text.chars().take(10).collect()))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port_text) = split_host_port(authority).ok_or(UrlError::Bracket)?;
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port_text {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(UrlError::Port(p.to_owned())),
            },
            None => None,
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, q),
            None => (tail, ""),
        };
        Ok(Self {
            secure,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(if secure { 443 } else { 80 }),
            explicit_port: port.is_some(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            query: query.into(),
        })
    }

    /// The same URL with `worker_id=<id>` set in its query (any earlier
    /// `worker_id` replaced), re-encoded as Go's `url.Values.Encode` does.
    pub fn with_worker_id(&self, worker_id: &str) -> Self {
        let mut pairs: Vec<(String, String)> = parse_query(&self.query)
            .into_iter()
            .filter(|(k, _)| k != "worker_id")
            .collect();
        pairs.push(("worker_id".into(), worker_id.into()));
        // Stable sort keeps repeated keys' values in their original order, as Go does.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect::<Vec<_>>()
            .join("&");
        Self {
            query,
            ..self.clone()
        }
    }

    /// `host:port` as a CONNECT target or `Host` value (IPv6 in brackets).
    pub fn authority(&self) -> String {
        crate::net::authority(&self.host, self.port)
    }

    /// Where the dial goes, for the network layer.
    pub fn peer(&self) -> Peer {
        Peer {
            secure: self.secure,
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// The host, with brackets around an IPv6 address.
    pub fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}", self.bracketed_host())?;
        if self.explicit_port {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

/// Decodes a query string into pairs (`+` is a space, `%XX` a byte).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_url() {
        let u = WsUrl::parse("wss://oz.warp.dev/api/v1/selfhosted/worker/ws").unwrap();
        assert_eq!(
            u,
            WsUrl {
                secure: true,
                host: "oz.warp.dev".into(),
                port: 443,
                explicit_port: false,
                path: "/api/v1/selfhosted/worker/ws".into(),
                query: String::new(),
            }
        );
        assert_eq!(
            u.to_string(),
            "wss://oz.warp.dev/api/v1/selfhosted/worker/ws"
        );
    }

    #[test]
    fn parses_ipv6_port_query_and_drops_fragment() {
        let u = WsUrl::parse("WS://user:pw@[::1]:8080?a=1#frag").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.path, "/");
        assert_eq!(u.query, "a=1");
        assert_eq!(u.authority(), "[::1]:8080");
        assert_eq!(u.to_string(), "ws://[::1]:8080/?a=1");
    }

    #[test]
    fn rejects_bad_urls() {
        assert_eq!(
            WsUrl::parse("https://x/"),
            Err(UrlError::Scheme("https".into()))
        );
        assert_eq!(WsUrl::parse("ws:///path"), Err(UrlError::NoHost));
        assert_eq!(
            WsUrl::parse("ws://h:99999/"),
            Err(UrlError::Port("99999".into()))
        );
        assert_eq!(WsUrl::parse("ws://[::1/"), Err(UrlError::Bracket));
        assert!(WsUrl::parse("oz.warp.dev").is_err());
        for bad in [
            "wss://oz.warp.dev/ws\r\nX-Injected: 1",
            "wss://oz.warp.dev/ws?a=1\nb",
            "wss://oz\0.warp.dev/",
        ] {
            assert_eq!(WsUrl::parse(bad), Err(UrlError::Control), "{bad:?}");
        }
    }

    #[test]
    fn only_plain_ws_to_another_host_sends_the_key_in_clear() {
        for (url, clear) in [
            ("ws://oz.example.com/ws", true),
            ("ws://10.0.0.7:8080/ws", true),
            ("ws://127.0.0.1:9/ws", false),
            ("ws://127.8.0.1/ws", false),
            ("ws://localhost:9/ws", false),
            ("ws://[::1]:9/ws", false),
            ("wss://oz.example.com/ws", false),
        ] {
            assert_eq!(
                WsUrl::parse(url).unwrap().sends_key_in_clear(),
                clear,
                "{url}"
            );
        }
    }

    #[test]
    fn worker_id_is_added_sorted_and_escaped_like_go() {
        let u = WsUrl::parse("ws://h:1/ws?zeta=z%20z&alpha=1&worker_id=old&alpha=0").unwrap();
        let w = u.with_worker_id("my worker/1&x=ü");
        assert_eq!(
            w.query,
            "alpha=1&alpha=0&worker_id=my+worker%2F1%26x%3D%C3%BC&zeta=z+z"
        );
        assert_eq!(
            WsUrl::parse("wss://h/p")
                .unwrap()
                .with_worker_id("w-1")
                .to_string(),
            "wss://h/p?worker_id=w-1"
        );
    }
}
