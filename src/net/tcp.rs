//! Name lookup and TCP connect, each bounded by a timeout.
//!
//! Owns the two ways a name is looked up (on the calling thread, as the
//! dialler always has, or on a helper thread with a deadline for checks
//! that must not hang on a stuck resolver) and trying each resolved address
//! in turn. No TLS, no proxies, no socket options beyond the connect.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{NetError, authority};

/// TCP to `host:port`: looks the name up on this thread, then tries each
/// address with `timeout` (the last address's error is reported).
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, NetError> {
    let target = authority(host, port);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| NetError::Resolve {
            target: target.clone(),
            source,
        })?
        .collect();
    connect_to(&target, addrs, timeout)
}

/// TCP to the first of `addrs` that accepts within `timeout`; `target`
/// (`host:port`) names them in the error.
pub fn connect_to(
    target: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, NetError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(NetError::Connect {
        target: target.to_owned(),
        source: last,
    })
}

/// Looks `host:port` up on a helper thread, so a hung resolver costs at most
/// `timeout`; the thread is left to finish on its own. The list may be empty.
pub fn resolve_within(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, NetError> {
    let resolve_err = |source| NetError::Resolve {
        target: authority(host, port),
        source,
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let target = (host.to_owned(), port);
    std::thread::Builder::new()
        .name("net-dns".into())
        .spawn(move || {
            let _ = tx.send(target.to_socket_addrs().map(Iterator::collect));
        })
        .map_err(resolve_err)?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(resolve_err),
        Err(_) => Err(NetError::ResolveTimeout {
            host: host.to_owned(),
            after: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_address_is_a_connect_error_naming_the_target() {
        let e = connect_to("[::1]:9", Vec::new(), Duration::from_millis(10)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "could not connect to [::1]:9: the name has no addresses"
        );
    }

    #[test]
    fn an_ip_literal_resolves_without_the_network() {
        let addrs = resolve_within("127.0.0.1", 5, Duration::from_secs(5)).unwrap();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 5))]);
    }
}
