//! The OTLP endpoint URL: `http://` or `https://`, parsed into the parts
//! the exporter dials and the form it logs. Pure; the WebSocket URL is
//! [`crate::connection::WsUrl`], with its own rules.

/// A parsed `http://` or `https://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https`.
    pub secure: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (80 / 443 when the URL has none).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// Query without `?`, possibly empty.
    pub query: String,
}

impl HttpUrl {
    /// The URL requests go to.
    pub fn url(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        format!("{}{}{query}", self.origin(), self.path)
    }

    /// The URL as logged: without the query, which may carry a token.
    pub fn shown(&self) -> String {
        format!("{}{}", self.origin(), self.path)
    }

    fn origin(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// `http(s)://[user@]host[:port][/path][?query][#fragment]`; the user part
/// and fragment are dropped (the Go exporter uses neither).
pub fn parse_endpoint(text: &str) -> Result<HttpUrl, &'static str> {
    if text.chars().any(char::is_control) {
        return Err(
            "holds a control character (CR, LF, NUL, …), which would split the HTTP request",
        );
    }
    let (secure, rest) = if let Some(r) = strip_prefix_ci(text, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(text, "http://") {
        (false, r)
    } else {
        return Err("is not an http:// or https:// URL");
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q),
        None => (tail, ""),
    };
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("has an unclosed [ in its host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has a space or control character in its host");
    }
    let port = match port {
        None | Some("") => {
            if secure {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| "has a port that is not a number from 0 to 65535")?,
    };
    if path
        .chars()
        .chain(query.chars())
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("has a space or control character in its path");
    }
    Ok(HttpUrl {
        secure,
        host: host.to_owned(),
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
        query: query.to_owned(),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}
