//! Network checks towards the orchestrator: the proxy that applies, DNS of
//! the WebSocket host, TCP connect, TLS, the WebSocket handshake with the API
//! key, and the local clock against the handshake's `Date` header.
//!
//! Dials once, with the same code the worker uses (so proxy, CA and header
//! handling are the worker's own), every step bounded by [`STEP_TIMEOUT`];
//! the connection is closed with 1000 right after the handshake, before any
//! message is read, so no task is claimed. Must never print the API key or
//! proxy credentials.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::clock;
use super::{Check, DoctorInput, Reporter, Status};
use crate::config::check_line_breaks;
use crate::connection::{DialError, DialParams, WsUrl, dial_with_response};
use crate::net::{self, NetError, ProxySettings, ProxyUrl, RootSource, client_config, load_roots};

/// Bound on DNS, on the TCP connect and on each read or write of the
/// handshakes.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Every network check, in order; later steps are skipped after a failure.
pub fn run(input: &DoctorInput, report: &mut Reporter<'_>) {
    let cfg = &input.config;
    let url = match WsUrl::parse(&cfg.websocket_url) {
        Ok(url) => url.with_worker_id(&cfg.worker_id),
        Err(e) => {
            report.add(Check::fail(
                "websocket url",
                e.to_string(),
                "pass a ws:// or wss:// URL with --web-socket-url (or leave it unset for Oz)",
            ));
            return;
        }
    };
    if url.sends_key_in_clear() {
        report.add(Check::warn(
            "websocket url",
            format!(
                "{} is plain ws:// to a host other than this one: the API key travels in clear; use wss://",
                url.authority()
            ),
        ));
    }
    let env = |name: &str| input.env.get(name);
    let proxies = ProxySettings::from_env(&env);
    if let Some(unusable) = proxies.unusable_for(&url.peer()) {
        report.add(Check::fail(
            "proxy",
            unusable.to_string(),
            "set HTTPS_PROXY / HTTP_PROXY to http://[user:pass@]host:port, or unset it (NO_PROXY lists hosts reached directly)",
        ));
        return;
    }
    let proxy = match proxies.proxy_for(&url.peer()) {
        None => {
            report.add(Check::pass(
                "proxy",
                format!("none applies; connecting directly to {}", url.authority()),
            ));
            None
        }
        Some(Ok(p)) => {
            report.add(Check::pass(
                "proxy",
                format!("connecting to {} through {p}", url.authority()),
            ));
            Some(p)
        }
        Some(Err(e)) => {
            report.add(Check::fail(
                "proxy",
                e.to_string(),
                "correct HTTPS_PROXY / HTTP_PROXY (http://[user:pass@]host:port), or unset it",
            ));
            return;
        }
    };
    let dns = resolve(&url.host, url.port);
    let dns = dns_check(&url.host, &dns, proxy.as_ref());
    let stop = dns.status == Status::Fail;
    report.add(dns);
    if stop {
        return;
    }
    if input.worker_id_problem.is_some() || input.api_key_problem.is_some() {
        report.add(Check::warn(
            "websocket",
            "not checked: the worker id or API key is missing (see above)",
        ));
        return;
    }
    if check_line_breaks(cfg).is_err() {
        report.add(Check::warn(
            "websocket",
            "not checked: a setting holds a CR, LF or NUL character (see above)",
        ));
        return;
    }
    handshake(input, &url, proxy.as_ref(), report);
}

/// What name resolution found.
pub struct Resolved {
    /// Pass: resolved; Fail: did not (or timed out).
    pub status: Status,
    /// The addresses, or the resolver's words.
    pub detail: String,
}

/// Resolves on a helper thread so a hung resolver cannot hold the doctor
/// beyond [`STEP_TIMEOUT`]; the thread is left to finish on its own.
pub fn resolve(host: &str, port: u16) -> Resolved {
    let fail = |detail| Resolved {
        status: Status::Fail,
        detail,
    };
    match net::resolve_within(host, port, STEP_TIMEOUT) {
        Ok(addrs) if !addrs.is_empty() => {
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            Resolved {
                status: Status::Pass,
                detail: list.join(", "),
            }
        }
        Ok(_) => fail("the name has no addresses".into()),
        Err(NetError::ResolveTimeout { .. }) => {
            fail(format!("no answer within {}s", STEP_TIMEOUT.as_secs()))
        }
        Err(e) => fail(e.into_io().to_string()),
    }
}

fn dns_check(host: &str, dns: &Resolved, proxy: Option<&ProxyUrl>) -> Check {
    match (dns.status, proxy) {
        (Status::Fail, Some(p)) => Check::warn(
            "dns",
            format!(
                "{host} does not resolve here ({}); the proxy {p} resolves it",
                dns.detail
            ),
        ),
        (Status::Fail, None) => Check::fail(
            "dns",
            format!("{host} does not resolve: {}", dns.detail),
            "check the host in --web-socket-url and this host's DNS (/etc/resolv.conf); set HTTPS_PROXY if only a proxy can resolve it",
        ),
        _ => Check::pass("dns", format!("{host} resolves to {}", dns.detail)),
    }
}

fn handshake(
    input: &DoctorInput,
    url: &WsUrl,
    proxy: Option<&ProxyUrl>,
    report: &mut Reporter<'_>,
) {
    let env = |name: &str| input.env.get(name);
    let (roots, added, problems) = load_roots(&RootSource::from_env(&env));
    for p in problems {
        report.add(Check::warn("ca certificates", p.to_string()));
    }
    let tls = match client_config(roots) {
        Ok(tls) => tls,
        Err(e) => {
            report.add(Check::fail(
                "tls",
                e.to_string(),
                "report this: the TLS library refused its own defaults",
            ));
            return;
        }
    };
    let params = DialParams {
        url,
        api_key: &input.config.api_key,
        proxy,
        tls: &tls,
        timeout: STEP_TIMEOUT,
    };
    let via = proxy.map(|p| format!(" through {p}")).unwrap_or_default();
    match dial_with_response(&params) {
        Ok((mut ws, response)) => {
            // Before reading anything: the doctor must never receive (and so
            // strand) an assignment.
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            drain_close(&mut ws);
            report.add(Check::pass(
                "connect",
                format!("connected to {}{via}", url.authority()),
            ));
            if url.secure {
                report.add(Check::pass("tls", tls_detail(&url.host, added)));
            }
            report.add(Check::pass(
                "websocket",
                "handshake accepted with the API key (HTTP 101); closed with 1000",
            ));
            let date = response
                .headers()
                .get("date")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            report.add(clock_check(date.as_deref(), SystemTime::now()));
        }
        Err(e) => {
            for check in dial_failure(&e, url, &via, added) {
                report.add(check);
            }
            report.add(Check::warn(
                "clock",
                "not checked: no handshake response to compare with",
            ));
        }
    }
}

/// Waits (bounded) for the orchestrator's Close reply so the 1000 is seen.
fn drain_close<S: std::io::Read + std::io::Write>(ws: &mut tungstenite::WebSocket<S>) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        if ws.read().is_err() {
            break;
        }
    }
}

fn tls_detail(host: &str, added: usize) -> String {
    if added > 0 {
        format!(
            "certificate for {host} verified (trusting {added} extra CA certificate(s) from SSL_CERT_FILE/SSL_CERT_DIR)"
        )
    } else {
        format!("certificate for {host} verified")
    }
}

/// The checks a failed dial yields: the steps that got through, then the
/// one that failed.
pub fn dial_failure(e: &DialError, url: &WsUrl, via: &str, added: usize) -> Vec<Check> {
    let connected = Check::pass("connect", format!("connected to {}{via}", url.authority()));
    let tls_ok = url
        .secure
        .then(|| Check::pass("tls", tls_detail(&url.host, added)));
    match e {
        DialError::Net(NetError::Resolve { .. } | NetError::ResolveTimeout { .. })
        | DialError::Net(NetError::Connect { .. }) => vec![Check::fail(
            "connect",
            e.to_string(),
            if via.is_empty() {
                "check the host and port in --web-socket-url and that this host may connect out to it (firewall; set HTTPS_PROXY if a proxy is required)"
            } else {
                "check that the proxy in HTTPS_PROXY / HTTP_PROXY is up and reachable from this host"
            },
        )],
        DialError::Net(NetError::Proxy { .. } | NetError::ProxyIo { .. }) => vec![Check::fail(
            "connect",
            e.to_string(),
            "check the proxy's address and credentials, and that it allows CONNECT to this host and port",
        )],
        DialError::Net(NetError::Tls { .. }) => vec![
            connected,
            Check::fail(
                "tls",
                e.to_string(),
                "if a TLS-intercepting proxy is in the way, add its CA with SSL_CERT_FILE or SSL_CERT_DIR; also check the clock",
            ),
        ],
        DialError::Rejected {
            status: status @ (401 | 403),
            reason,
        } => {
            let mut checks = vec![connected];
            checks.extend(tls_ok);
            checks.push(Check::fail(
                "websocket",
                format!("HTTP {status} {reason}: API key is wrong or lacks team scope"),
                "create a team API key in Warp and pass it with --api-key or WARP_API_KEY",
            ));
            checks
        }
        DialError::Rejected { status, reason } => {
            let mut checks = vec![connected];
            checks.extend(tls_ok);
            checks.push(Check::fail(
                "websocket",
                format!("the orchestrator answered HTTP {status} {reason} instead of 101"),
                "check that --web-socket-url is the Oz worker endpoint; if it is, retry later",
            ));
            checks
        }
        DialError::HandshakeTimeout | DialError::Handshake(_) => {
            let mut checks = vec![connected];
            checks.extend(tls_ok);
            checks.push(Check::fail(
                "websocket",
                e.to_string(),
                "check that --web-socket-url is the Oz worker endpoint and that no proxy strips the upgrade",
            ));
            checks
        }
    }
}

/// Rates the local clock against the server's `Date` header.
pub fn clock_check(date: Option<&str>, now: SystemTime) -> Check {
    let Some(date) = date else {
        return Check::warn(
            "clock",
            "not checked: the handshake response has no Date header",
        );
    };
    let Some(server) = crate::calendar::parse_http_date(date) else {
        return Check::warn(
            "clock",
            format!("not checked: cannot read the Date header `{date}`"),
        );
    };
    let local = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let skew = local.abs_diff(server);
    let direction = if local >= server {
        "ahead of"
    } else {
        "behind"
    };
    let detail = format!("local clock is {skew}s {direction} the orchestrator's (Date: {date})");
    match clock::rate_skew(skew) {
        Status::Pass => Check::pass(
            "clock",
            format!("within {}s: {detail}", clock::PASS_WITHIN_SECS),
        ),
        Status::Warn => Check::warn("clock", detail),
        Status::Fail => Check::fail(
            "clock",
            detail,
            "synchronise the clock (NTP: e.g. `timedatectl set-ntp true` or chrony); TLS and tokens depend on it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn clock_ratings() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let server = 784_111_777;
        assert_eq!(
            clock_check(Some(date), at(server + 5)).render(),
            "PASS clock: within 60s: local clock is 5s ahead of the orchestrator's (Date: Sun, 06 Nov 1994 08:49:37 GMT)\n"
        );
        assert_eq!(
            clock_check(Some(date), at(server - 120)).render(),
            "WARN clock: local clock is 120s behind the orchestrator's (Date: Sun, 06 Nov 1994 08:49:37 GMT)\n"
        );
        let fail = clock_check(Some(date), at(server + 600));
        assert_eq!(fail.status, Status::Fail);
        assert_eq!(
            fail.detail,
            "local clock is 600s ahead of the orchestrator's (Date: Sun, 06 Nov 1994 08:49:37 GMT)"
        );
        assert_eq!(
            clock_check(None, at(0)).render(),
            "WARN clock: not checked: the handshake response has no Date header\n"
        );
        assert_eq!(
            clock_check(Some("yesterday"), at(0)).render(),
            "WARN clock: not checked: cannot read the Date header `yesterday`\n"
        );
    }

    #[test]
    fn rejections_map_to_the_websocket_step() {
        let url = WsUrl::parse("wss://oz.example/ws").unwrap();
        let e = DialError::Rejected {
            status: 403,
            reason: "Forbidden".into(),
        };
        let rendered: String = dial_failure(&e, &url, "", 0)
            .iter()
            .map(Check::render)
            .collect();
        assert_eq!(
            rendered,
            "PASS connect: connected to oz.example:443\n\
             PASS tls: certificate for oz.example verified\n\
             FAIL websocket: HTTP 403 Forbidden: API key is wrong or lacks team scope\n  \
             fix: create a team API key in Warp and pass it with --api-key or WARP_API_KEY\n"
        );
    }
}
