//! Byte streams to the daemon: a Unix socket, plain TCP, or TLS over TCP with
//! client certificates (the crate's network layer, [`crate::net`], does the
//! TCP connect and the rustls handshake).
//!
//! This module opens connections and nothing else: no HTTP (see the codec
//! in `src/http.rs`), no pooling (see `client.rs`). It owns the daemon's TLS
//! files and the mapping of connect failures to the one-line messages an
//! operator can act on.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::error::{DockerError, Result};
use crate::net::{self, NetError};

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address, with TLS material when TLS is on.
    Tcp {
        /// Host name or IP address (no brackets for IPv6).
        host: String,
        /// Port.
        port: u16,
        /// TLS settings; `None` is plain TCP.
        tls: Option<TlsFiles>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp { host, port, tls } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}{}", tls_suffix(tls))
            }
            Endpoint::Tcp { host, port, tls } => {
                write!(f, "tcp://{host}:{port}{}", tls_suffix(tls))
            }
        }
    }
}

fn tls_suffix(tls: &Option<TlsFiles>) -> &'static str {
    if tls.is_some() { " (TLS)" } else { "" }
}

/// TLS material as the docker CLI lays it out (`ca.pem`, `cert.pem`, `key.pem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signs the daemon's certificate; `None` uses the Web PKI roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key, when the daemon wants client auth.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The files in a docker cert directory: each one used only if present,
    /// as the CLI does for contexts.
    pub fn from_dir(dir: &Path) -> TlsFiles {
        let ca = dir.join("ca.pem");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        TlsFiles {
            ca: ca.exists().then_some(ca),
            client: (cert.exists() && key.exists()).then_some((cert, key)),
        }
    }
}

/// Opens connections to one endpoint; TLS configuration is loaded once.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Connector {
    /// Prepares connections to `endpoint`, reading its TLS files now so a bad
    /// file is reported at start rather than on the first task.
    pub fn new(endpoint: Endpoint) -> Result<Connector> {
        let tls = match &endpoint {
            Endpoint::Tcp {
                tls: Some(files), ..
            } => Some(tls_config(files)?),
            _ => None,
        };
        Ok(Connector { endpoint, tls })
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a new connection; `timeout` bounds the TCP connect and TLS handshake.
    pub fn connect(&self, timeout: Duration) -> Result<Stream> {
        match &self.endpoint {
            Endpoint::Unix(path) => connect_unix(path),
            Endpoint::Tcp { host, port, .. } => {
                let addr = format!("{host}:{port}");
                let fail = |source| DockerError::Connect {
                    addr: addr.clone(),
                    source,
                    origin: None,
                };
                let tcp = net::connect(host, *port, timeout).map_err(|e| fail(e.into_io()))?;
                tcp.set_nodelay(true).map_err(fail)?;
                match &self.tls {
                    None => Ok(Stream::Tcp(net::Stream::plain(tcp))),
                    Some(config) => handshake(config, host, tcp, timeout).map_err(fail),
                }
            }
        }
    }
}

fn connect_unix(path: &Path) -> Result<Stream> {
    match UnixStream::connect(path) {
        Ok(s) => Ok(Stream::Unix(s)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(DockerError::PermissionDenied {
                socket: path.to_path_buf(),
                // SAFETY: getuid cannot fail and touches no memory.
                uid: unsafe { libc::getuid() },
                gid: std::fs::metadata(path).ok().map(|m| m.gid()),
            })
        }
        Err(source) => Err(DockerError::NoDaemon {
            socket: path.to_path_buf(),
            source,
        }),
    }
}

fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> io::Result<Stream> {
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let stream = net::tls_handshake(tcp, host, config).map_err(NetError::into_io)?;
    stream.tcp().set_write_timeout(None)?;
    Ok(Stream::Tcp(stream))
}

fn tls_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let bad = |path: &Path, detail: String| DockerError::Config {
        what: path.display().to_string(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(ca, e.to_string()))?;
                roots.add(cert).map_err(|e| bad(ca, e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let client = match &files.client {
        None => None,
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
            Some((cert, chain, key_der))
        }
    };
    let cert_path = client.as_ref().map(|(cert, _, _)| cert.to_path_buf());
    net::tls::client_config_with_auth(roots, client.map(|(_, chain, key)| (chain, key))).map_err(
        // With a client certificate the certificate is what rustls refuses.
        |e| match &cert_path {
            Some(cert) => bad(cert, e.0.to_string()),
            None => DockerError::Config {
                what: "TLS".into(),
                detail: e.0.to_string(),
            },
        },
    )
}

/// An open connection to the daemon.
pub enum Stream {
    /// Unix socket.
    Unix(UnixStream),
    /// Plain TCP or TLS over TCP; a daemon that closes TLS without
    /// `close_notify` has ended the stream (the HTTP framing decides whether
    /// that was the end of the body).
    Tcp(net::Stream),
}

impl Stream {
    /// Sets (or clears) the timeout of each read.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.tcp().set_read_timeout(timeout),
        }
    }

    /// A second handle on the same socket that can shut it down from another
    /// thread, unblocking any read or write in progress.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(match self {
            Stream::Unix(s) => ShutdownHandle::Unix(s.try_clone()?),
            Stream::Tcp(s) => ShutdownHandle::Tcp(s.tcp().try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Shuts a connection down from another thread (see [`Stream::shutdown_handle`]).
#[derive(Debug)]
pub enum ShutdownHandle {
    /// A clone of a Unix socket.
    Unix(UnixStream),
    /// A clone of a TCP socket.
    Tcp(TcpStream),
}

impl ShutdownHandle {
    /// Shuts both directions down; errors (already closed) are irrelevant.
    pub fn shutdown(&self) {
        let _ = match self {
            ShutdownHandle::Unix(s) => s.shutdown(Shutdown::Both),
            ShutdownHandle::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}
