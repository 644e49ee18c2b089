//! TCP and TLS relays in front of the Docker daemon's Unix socket, so tests can
//! reach the real daemon as `tcp://` and as `tcp://` with mutual TLS.
//!
//! Owns only its helper processes (socat, stunnel) and their temp dirs; never
//! touches the daemon's state. Needs `socat`, `stunnel4` and `openssl` on PATH
//! (`bash .ci/run` installs them). The process plumbing it shares with
//! [`crate::registry`] lives in [`process`].

mod certs;
pub mod process;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certs::mint_certs;
use process::io_err;
pub use process::{FixtureError, Helper, TempDir, free_loopback_addr};

fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `socat` relaying `127.0.0.1:<free port>` to a Unix socket (the Docker
/// daemon's, normally), one forked child per connection.
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    helper: Helper,
    _dir: TempDir,
}

impl TcpRelay {
    /// Starts the relay and returns once it accepts connections.
    ///
    /// # Panics
    /// When socat is missing or does not come up; see [`TcpRelay::try_start`].
    pub fn start(unix_socket: impl AsRef<Path>) -> TcpRelay {
        Self::try_start(unix_socket).unwrap_or_else(|e| panic!("TCP relay: {e}"))
    }

    /// Starts the relay and returns once it accepts connections.
    pub fn try_start(unix_socket: impl AsRef<Path>) -> Result<TcpRelay, FixtureError> {
        let dir = TempDir::new("tcp-relay")?;
        let addr = free_loopback_addr()?;
        let mut cmd = Command::new("socat");
        cmd.args(socat_args(addr, unix_socket.as_ref()));
        let mut helper = Helper::spawn("socat", cmd, dir.path().join("socat.log"))?;
        helper.wait_ready(addr, accepts_tcp)?;
        Ok(TcpRelay {
            addr,
            helper,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `DOCKER_HOST` value that reaches the daemon through this relay.
    pub fn docker_host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// socat's own log (it logs each connection it forks for).
    pub fn log(&self) -> String {
        self.helper.log()
    }
}

/// socat's argv for a loopback listener relaying to `unix_socket`.
pub fn socat_args(addr: SocketAddr, unix_socket: &Path) -> Vec<String> {
    vec![
        "-d".into(),
        "-d".into(),
        format!(
            "TCP-LISTEN:{},bind={},fork,reuseaddr",
            addr.port(),
            addr.ip()
        ),
        format!("UNIX-CONNECT:{}", unix_socket.display()),
    ]
}

/// stunnel terminating mutual TLS on `127.0.0.1:<free port>` in front of a
/// [`TcpRelay`], with throwaway certificates. [`TlsRelay::cert_path`] is laid
/// out as `DOCKER_CERT_PATH` expects (`ca.pem`, `cert.pem`, `key.pem`).
#[derive(Debug)]
pub struct TlsRelay {
    addr: SocketAddr,
    stunnel: Helper,
    _inner: TcpRelay,
    dir: TempDir,
}

impl TlsRelay {
    /// Starts the TCP relay, mints certificates, starts stunnel (client
    /// certificates required, `verify = 2`), and returns once it accepts.
    ///
    /// # Panics
    /// When a tool is missing or fails; see [`TlsRelay::try_start`].
    pub fn start(unix_socket: impl AsRef<Path>) -> TlsRelay {
        Self::try_start(unix_socket).unwrap_or_else(|e| panic!("TLS relay: {e}"))
    }

    /// As [`TlsRelay::start`], returning the error instead.
    pub fn try_start(unix_socket: impl AsRef<Path>) -> Result<TlsRelay, FixtureError> {
        let inner = TcpRelay::try_start(unix_socket)?;
        let dir = TempDir::new("tls-relay")?;
        mint_certs(dir.path())?;
        let addr = free_loopback_addr()?;
        let conf = dir.path().join("stunnel.conf");
        fs::write(&conf, stunnel_conf(addr, inner.addr(), dir.path()))
            .map_err(io_err(format!("writing {}", conf.display())))?;
        let mut cmd = Command::new("stunnel");
        cmd.arg(&conf);
        let mut stunnel = Helper::spawn("stunnel", cmd, dir.path().join("stunnel.log"))?;
        stunnel.wait_ready(addr, accepts_tcp)?;
        Ok(TlsRelay {
            addr,
            stunnel,
            _inner: inner,
            dir,
        })
    }

    /// `127.0.0.1:PORT` (TLS).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `DOCKER_HOST` value (use with `DOCKER_TLS_VERIFY=1`).
    pub fn docker_host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// The client's `DOCKER_CERT_PATH`: `ca.pem`, `cert.pem`, `key.pem`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// A directory like [`TlsRelay::cert_path`] whose client certificate is
    /// signed by a different CA, which stunnel must reject.
    pub fn untrusted_cert_path(&self) -> PathBuf {
        self.dir.path().join("untrusted")
    }

    /// stunnel's own log (handshake failures show here).
    pub fn log(&self) -> String {
        self.stunnel.log()
    }
}

/// stunnel's config: foreground, no pid file, mutual TLS to `upstream`.
pub fn stunnel_conf(listen: SocketAddr, upstream: SocketAddr, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "foreground = yes\npid =\ndebug = info\n\n[docker]\naccept = {listen}\nconnect = {upstream}\n\
         cert = {d}/server/cert.pem\nkey = {d}/server/key.pem\nCAfile = {d}/client/ca.pem\nverify = 2\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socat_args_listen_on_loopback_and_relay_to_the_socket() {
        let addr: SocketAddr = "127.0.0.1:2375".parse().unwrap();
        assert_eq!(
            socat_args(addr, Path::new("/var/run/docker.sock")),
            vec![
                "-d",
                "-d",
                "TCP-LISTEN:2375,bind=127.0.0.1,fork,reuseaddr",
                "UNIX-CONNECT:/var/run/docker.sock"
            ]
        );
    }

    #[test]
    fn stunnel_conf_requires_client_certs() {
        let conf = stunnel_conf(
            "127.0.0.1:2376".parse().unwrap(),
            "127.0.0.1:2375".parse().unwrap(),
            Path::new("/t"),
        );
        assert_eq!(
            conf,
            "foreground = yes\npid =\ndebug = info\n\n[docker]\naccept = 127.0.0.1:2376\n\
             connect = 127.0.0.1:2375\ncert = /t/server/cert.pem\nkey = /t/server/key.pem\n\
             CAfile = /t/client/ca.pem\nverify = 2\n"
        );
    }

    const DOCKER_SOCK: &str = "/var/run/docker.sock";

    fn ping(addr: SocketAddr) -> String {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn tcp_relay_reaches_the_daemon_and_stops_on_drop() {
        let relay = TcpRelay::start(DOCKER_SOCK);
        let addr = relay.addr();
        assert_eq!(
            relay.docker_host(),
            format!("tcp://127.0.0.1:{}", addr.port())
        );
        let reply = ping(addr);
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nOK"), "{reply}");
        drop(relay);
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    fn docker_version_over_tls(relay: &TlsRelay, certs: &Path) -> std::process::Output {
        let cert = |name: &str| certs.join(name).display().to_string();
        Command::new("docker")
            .args(["-H", &relay.docker_host(), "--tlsverify"])
            .args(["--tlscacert", &cert("ca.pem")])
            .args(["--tlscert", &cert("cert.pem")])
            .args(["--tlskey", &cert("key.pem")])
            .args(["version", "--format", "{{.Server.Os}}"])
            .output()
            .unwrap()
    }

    #[test]
    fn tls_relay_serves_trusted_clients_and_refuses_strangers() {
        let relay = TlsRelay::start(DOCKER_SOCK);
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            assert!(relay.cert_path().join(name).is_file(), "{name}");
        }
        let ok = docker_version_over_tls(&relay, &relay.cert_path());
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "linux\n");

        let refused = docker_version_over_tls(&relay, &relay.untrusted_cert_path());
        assert!(!refused.status.success());
        // Go's client withholds a certificate the server's CA list does not
        // name, so stunnel reports the handshake failure as a missing one.
        let log = relay.log();
        assert!(log.contains("SSL_accept: "), "{log}");
        assert!(log.contains("peer did not return a certificate"), "{log}");
    }

    /// The certificates must also satisfy rustls/webpki, which the worker's
    /// own Docker client uses and which is stricter than Go or OpenSSL.
    #[test]
    fn tls_relay_certificates_work_with_rustls() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::io::{Read, Write};
        use std::sync::Arc;

        let relay = TlsRelay::start(DOCKER_SOCK);
        let dir = relay.cert_path();
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(relay.addr()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        // stunnel may close without close_notify once docker hangs up.
        let _ = tls.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nOK"), "{reply}");
    }
}
