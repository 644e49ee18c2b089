//! Which HTTP proxy, if any, a connection goes through, and the `CONNECT`
//! tunnel through it.
//!
//! Owns reading `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` from an
//! injected environment lookup, the `NO_PROXY` rules of Go's
//! `golang.org/x/net/http/httpproxy` (`*`, IPs, CIDRs, domains with or without a
//! leading `.`/`*.`, optional `:port`, loopback never proxied), building the
//! `CONNECT` request and judging its answer, and [`open_stream`]: TCP (direct
//! or tunnelled) and TLS, the socket under the WebSocket and under the OTLP
//! push, so both go through the same proxy rules and trust the same roots.
//! Logs nothing. The proxy's credentials live only in [`ProxyUrl`] and the
//! request bytes; its `Debug`/`Display` never show them.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::net::cidr::Cidr;

use rustls::ClientConfig;

use super::{NetError, Peer, Stream, connect, percent_decode, split_host_port, tls_handshake};

/// A proxy that `CONNECT` can tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Proxy host (no brackets).
    pub host: String,
    /// Proxy port (80 when the variable names none).
    pub port: u16,
    /// `user:password`, decoded, when the URL has userinfo.
    credentials: Option<String>,
}

impl ProxyUrl {
    /// Parses a proxy variable's value the way Go does: a value without a
    /// scheme is taken as `http://…`; only `http` proxies are supported.
    pub fn parse(value: &str) -> Result<Self, ProxyError> {
        let value = value.trim();
        if value.chars().any(char::is_control) {
            // A CR or LF here would end up inside the CONNECT request.
            return Err(ProxyError::Control);
        }
        let rest = match value.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(ProxyError::Scheme(scheme.to_ascii_lowercase())),
            None => value,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or(ProxyError::Invalid)?;
        if host.is_empty() {
            return Err(ProxyError::Invalid);
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| ProxyError::Invalid)?,
            None => 80,
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            credentials: userinfo.map(|u| {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                format!("{}:{}", percent_decode(user), percent_decode(pass))
            }),
        })
    }

    /// True when the proxy URL carried a user name.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The `CONNECT` request for `target` (`host:port`), with
    /// `Proxy-Authorization: Basic` when the proxy URL has userinfo.
    pub fn connect_request(&self, target: &str) -> Vec<u8> {
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(c) = &self.credentials {
            req.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                data_encoding::BASE64.encode(c.as_bytes())
            ));
        }
        req.push_str("\r\n");
        req.into_bytes()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Why a proxy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The proxy URL's scheme is not `http` (e.g. `socks5`, `https`).
    Scheme(String),
    /// The proxy URL has no usable host or port.
    Invalid,
    /// The proxy answered `CONNECT` with something other than 200.
    Refused {
        /// The status line the proxy sent.
        status_line: String,
    },
    /// The proxy's answer is not an HTTP response.
    Garbled,
    /// The proxy URL holds a control character (CR, LF, NUL, …).
    Control,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(s) => write!(
                f,
                "proxy scheme {s:?} is not supported (use an http:// proxy or unset the proxy variable)"
            ),
            Self::Invalid => f.write_str("the proxy URL has no usable host:port"),
            Self::Refused { status_line } => {
                write!(f, "the proxy refused the CONNECT tunnel: {status_line}")
            }
            Self::Garbled => f.write_str("the proxy did not answer CONNECT with an HTTP response"),
            Self::Control => f.write_str(
                "the proxy URL holds a control character (CR, LF, NUL, …), which would split the CONNECT request",
            ),
        }
    }
}

impl std::error::Error for ProxyError {}

/// A proxy variable whose value cannot be used for the dial it applies to.
/// The environment cannot change while the worker runs, so this is refused
/// at start rather than retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableProxy {
    /// The variable that holds it, e.g. `HTTPS_PROXY` (never its value,
    /// which may carry credentials).
    pub variable: &'static str,
    /// What is wrong with the value.
    pub error: ProxyError,
}

impl fmt::Display for UnusableProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            ProxyError::Scheme(s) => write!(
                f,
                "{}: proxy scheme {s:?} is not supported (the worker tunnels through an http:// proxy with CONNECT); set it to http://host:port or unset it",
                self.variable
            ),
            other => write!(f, "{}: {other}", self.variable),
        }
    }
}

impl std::error::Error for UnusableProxy {}

/// The proxy configuration taken from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxySettings {
    /// For `wss://` (HTTPS_PROXY, https_proxy, then ALL_PROXY, all_proxy).
    pub https: Option<Result<ProxyUrl, ProxyError>>,
    /// For `ws://` (HTTP_PROXY, http_proxy, then ALL_PROXY, all_proxy).
    pub http: Option<Result<ProxyUrl, ProxyError>>,
    /// Hosts reached directly.
    pub no_proxy: NoProxy,
    /// The variables `https` and `http` were read from, for messages.
    from: (Option<&'static str>, Option<&'static str>),
}

impl ProxySettings {
    /// Reads the proxy variables through `env` (upper case wins, as in Go).
    /// `ALL_PROXY` is a fallback the spec asks for (Go itself ignores it); a
    /// non-http `ALL_PROXY` (usually socks) is skipped rather than failing.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&'static str]| {
            names
                .iter()
                .filter_map(|n| env(n).map(|v| (*n, v)))
                .find(|(_, v)| !v.trim().is_empty())
        };
        let all = first(&["ALL_PROXY", "all_proxy"])
            .and_then(|(n, v)| ProxyUrl::parse(&v).ok().map(|p| (n, Ok(p))));
        let pick = |names: &[&'static str]| {
            first(names)
                .map(|(n, v)| (n, ProxyUrl::parse(&v)))
                .or_else(|| all.clone())
        };
        let (https, http) = (
            pick(&["HTTPS_PROXY", "https_proxy"]),
            pick(&["HTTP_PROXY", "http_proxy"]),
        );
        Self {
            from: (https.as_ref().map(|p| p.0), http.as_ref().map(|p| p.0)),
            https: https.map(|p| p.1),
            http: http.map(|p| p.1),
            no_proxy: NoProxy::parse(
                &first(&["NO_PROXY", "no_proxy"])
                    .map(|(_, v)| v)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The proxy to tunnel through to `url`, or `None` to dial directly.
    pub fn proxy_for(&self, url: &Peer) -> Option<Result<ProxyUrl, ProxyError>> {
        let chosen = if url.secure { &self.https } else { &self.http };
        let chosen = chosen.as_ref()?;
        if !self.no_proxy.use_proxy(&url.host, url.port) {
            return None;
        }
        Some(chosen.clone())
    }

    /// The proxy variable that applies to `url` when its value cannot be
    /// used (an unsupported scheme, no host), naming the variable.
    pub fn unusable_for(&self, url: &Peer) -> Option<UnusableProxy> {
        let error = self.proxy_for(url)?.err()?;
        let from = if url.secure { self.from.0 } else { self.from.1 };
        Some(UnusableProxy {
            variable: from.unwrap_or("the proxy variable"),
            error,
        })
    }
}

/// `NO_PROXY`, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoProxy {
    all: bool,
    ips: Vec<(IpAddr, Option<u16>)>,
    cidrs: Vec<Cidr>,
    /// (suffix with leading '.', also match the bare host, port)
    domains: Vec<(String, bool, Option<u16>)>,
}

impl NoProxy {
    /// Parses a comma-separated `NO_PROXY` value.
    pub fn parse(value: &str) -> Self {
        let mut rules = Self::default();
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                return Self {
                    all: true,
                    ..Self::default()
                };
            }
            if let Some(cidr) = Cidr::parse(&entry) {
                rules.cidrs.push(cidr);
                continue;
            }
            let (host, port) = match split_entry(&entry) {
                Some(hp) => hp,
                None => continue,
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                rules.ips.push((ip, port));
                continue;
            }
            if host.is_empty() {
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (suffix, bare) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            rules.domains.push((suffix, bare, port));
        }
        rules
    }

    /// Whether a connection to `host:port` should go through the proxy.
    pub fn use_proxy(&self, host: &str, port: u16) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        if self.all {
            return false;
        }
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        if let Some(ip) = ip {
            if self.ips.iter().any(|(i, p)| *i == ip && port_ok(p)) {
                return false;
            }
            if self.cidrs.iter().any(|cidr| cidr.contains(ip)) {
                return false;
            }
        }
        !self.domains.iter().any(|(suffix, bare, p)| {
            (host.ends_with(suffix.as_str()) || (*bare && host == suffix[1..])) && port_ok(p)
        })
    }
}

/// `host`, `host:port`, `[v6]:port`; `None` for a malformed entry.
fn split_entry(entry: &str) -> Option<(&str, Option<u16>)> {
    if entry.parse::<IpAddr>().is_ok() {
        return Some((entry, None));
    }
    let (host, port) = split_host_port(entry)?;
    match port {
        Some(p) => Some((host, Some(p.parse().ok()?))),
        None => Some((host, None)),
    }
}

/// Checks the proxy's answer to `CONNECT` (the bytes up to the blank line):
/// its status line decides.
pub fn check_connect_response(head: &[u8]) -> Result<(), ProxyError> {
    let text = String::from_utf8_lossy(head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    match crate::http::parse_status_line(&status_line) {
        Ok(line) if line.status == 200 => Ok(()),
        Ok(_) => Err(ProxyError::Refused { status_line }),
        Err(_) => Err(ProxyError::Garbled),
    }
}

/// TCP to `url`'s host (directly or through a `CONNECT` tunnel) and, for a
/// secure peer, TLS; read and write timeouts are set to `timeout`.
pub fn open_stream(
    url: &Peer,
    proxy: Option<&ProxyUrl>,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Stream, NetError> {
    let tcp = match proxy {
        Some(proxy) => tunnel(proxy, &url.authority(), timeout)?,
        None => connect(&url.host, url.port, timeout)?,
    };
    let io_err = |source| NetError::Connect {
        target: url.authority(),
        source,
    };
    tcp.set_read_timeout(Some(timeout)).map_err(io_err)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let _ = tcp.set_nodelay(true);
    if url.secure {
        tls_handshake(tcp, &url.host, tls)
    } else {
        Ok(Stream::plain(tcp))
    }
}

/// Opens a `CONNECT` tunnel to `target` through `proxy`.
fn tunnel(proxy: &ProxyUrl, target: &str, timeout: Duration) -> Result<TcpStream, NetError> {
    let name = proxy.to_string();
    let mut tcp = connect(&proxy.host, proxy.port, timeout)?;
    let io_err = |source| NetError::ProxyIo {
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
            return Err(NetError::Proxy {
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
    check_connect_response(&head).map_err(|error| NetError::Proxy { proxy: name, error })?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// `ws[s]://host[:port]/` as the peer it dials.
    fn url(s: &str) -> Peer {
        let (scheme, rest) = s.split_once("://").unwrap();
        let secure = scheme == "wss";
        let (host, port) = split_host_port(rest.split('/').next().unwrap()).unwrap();
        Peer {
            secure,
            host: host.to_owned(),
            port: port.map_or(if secure { 443 } else { 80 }, |p| p.parse().unwrap()),
        }
    }

    #[test]
    fn a_control_character_in_a_proxy_url_is_refused() {
        for bad in [
            "http://p:3128\r\nX-Injected: 1",
            "p\n:3128",
            "http://u:p@h\0:1",
        ] {
            assert_eq!(ProxyUrl::parse(bad), Err(ProxyError::Control), "{bad:?}");
        }
        assert_eq!(
            ProxyError::Control.to_string(),
            "the proxy URL holds a control character (CR, LF, NUL, …), which would split the CONNECT request"
        );
    }

    #[test]
    fn proxy_url_parsing() {
        let p = ProxyUrl::parse("http://us%40r:p%3Ass@Proxy.example:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.to_string(), "http://proxy.example:3128");
        assert_eq!(format!("{p:?}"), "ProxyUrl(http://proxy.example:3128)");
        assert_eq!(
            String::from_utf8(p.connect_request("oz.test:443")).unwrap(),
            "CONNECT oz.test:443 HTTP/1.1\r\nHost: oz.test:443\r\nProxy-Authorization: Basic dXNAcjpwOnNz\r\n\r\n"
        );
        let bare = ProxyUrl::parse("10.0.0.1").unwrap();
        assert_eq!(
            (bare.host.as_str(), bare.port, bare.has_credentials()),
            ("10.0.0.1", 80, false)
        );
        assert_eq!(
            String::from_utf8(bare.connect_request("[::1]:8")).unwrap(),
            "CONNECT [::1]:8 HTTP/1.1\r\nHost: [::1]:8\r\n\r\n"
        );
        assert_eq!(
            ProxyUrl::parse("socks5://h:1"),
            Err(ProxyError::Scheme("socks5".into()))
        );
        assert_eq!(ProxyUrl::parse("http://:8080"), Err(ProxyError::Invalid));
    }

    #[test]
    fn env_precedence_matches_go_plus_all_proxy_fallback() {
        let s = ProxySettings::from_env(&env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("http_proxy", "lower-http:3"),
        ]));
        let host = |o: Option<Result<ProxyUrl, ProxyError>>| o.map(|r| r.unwrap().host);
        assert_eq!(
            host(s.proxy_for(&url("wss://oz.warp.dev/"))),
            Some("upper".into())
        );
        assert_eq!(
            host(s.proxy_for(&url("ws://oz.warp.dev/"))),
            Some("lower-http".into())
        );

        let s = ProxySettings::from_env(&env(&[("all_proxy", "http://all:9")]));
        assert_eq!(
            host(s.proxy_for(&url("wss://oz.warp.dev/"))),
            Some("all".into())
        );
        let s = ProxySettings::from_env(&env(&[("ALL_PROXY", "socks5://s:1")]));
        assert_eq!(s.proxy_for(&url("wss://oz.warp.dev/")), None);
        let s = ProxySettings::from_env(&env(&[("HTTPS_PROXY", "socks5://s:1")]));
        assert_eq!(
            s.proxy_for(&url("wss://oz.warp.dev/")),
            Some(Err(ProxyError::Scheme("socks5".into())))
        );
        let s = ProxySettings::from_env(&env(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "warp.dev"),
        ]));
        assert_eq!(s.proxy_for(&url("wss://oz.warp.dev/")), None);
    }

    #[test]
    fn an_unusable_proxy_names_its_variable_not_its_value() {
        let s = ProxySettings::from_env(&env(&[
            ("https_proxy", "socks5://user:s3cret@s:1080"),
            ("HTTP_PROXY", "http://:8"),
        ]));
        let wss = s.unusable_for(&url("wss://oz.warp.dev/")).unwrap();
        assert_eq!(
            wss.to_string(),
            "https_proxy: proxy scheme \"socks5\" is not supported (the worker tunnels through an http:// proxy with CONNECT); set it to http://host:port or unset it"
        );
        assert_eq!(
            s.unusable_for(&url("ws://oz.warp.dev/"))
                .unwrap()
                .to_string(),
            "HTTP_PROXY: the proxy URL has no usable host:port"
        );
        // Not applying (NO_PROXY, loopback, none set) or usable: nothing to refuse.
        assert_eq!(s.unusable_for(&url("wss://127.0.0.1:9/")), None);
        let ok = ProxySettings::from_env(&env(&[("HTTPS_PROXY", "http://p:1")]));
        assert_eq!(ok.unusable_for(&url("wss://oz.warp.dev/")), None);
        let bypass = ProxySettings::from_env(&env(&[
            ("HTTPS_PROXY", "socks5://s:1"),
            ("NO_PROXY", "oz.warp.dev"),
        ]));
        assert_eq!(bypass.unusable_for(&url("wss://oz.warp.dev/")), None);
    }

    #[test]
    fn no_proxy_rules_follow_go_httpproxy() {
        let n = NoProxy::parse(
            " Example.com, .dot.org,*.star.net,10.1.2.3,192.168.0.0/16, ::2 ,port.io:8443,[::5]:99,:80",
        );
        let cases = [
            ("example.com", 443, false),
            ("sub.example.com", 443, false),
            ("notexample.com", 443, true),
            ("dot.org", 443, true),
            ("a.dot.org", 443, false),
            ("star.net", 443, true),
            ("x.star.net", 443, false),
            ("10.1.2.3", 443, false),
            ("10.1.2.4", 443, true),
            ("192.168.7.7", 443, false),
            ("192.169.0.1", 443, true),
            ("::2", 443, false),
            ("port.io", 8443, false),
            ("port.io", 443, true),
            ("::5", 99, false),
            ("::5", 98, true),
            ("localhost", 443, false),
            ("127.0.0.9", 443, false),
            ("::1", 443, false),
            ("oz.warp.dev", 443, true),
        ];
        for (host, port, want) in cases {
            assert_eq!(n.use_proxy(host, port), want, "{host}:{port}");
        }
        assert!(!NoProxy::parse("a.com, *").use_proxy("oz.warp.dev", 443));
        assert!(NoProxy::parse("").use_proxy("oz.warp.dev", 443));
    }

    #[test]
    fn connect_response_status() {
        assert_eq!(
            check_connect_response(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(())
        );
        assert_eq!(check_connect_response(b"HTTP/1.0 200 OK\r\n\r\n"), Ok(()));
        assert_eq!(
            check_connect_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(ProxyError::Refused {
                status_line: "HTTP/1.1 407 Proxy Authentication Required".into()
            })
        );
        assert_eq!(
            check_connect_response(b"SSH-2.0\r\n\r\n"),
            Err(ProxyError::Garbled)
        );
    }
}
