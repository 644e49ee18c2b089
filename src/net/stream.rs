//! The byte stream of a network connection, plain TCP or TLS over TCP, and
//! the rustls client handshake that makes the TLS one.
//!
//! Owns the one place that decides what a TLS peer closing without
//! `close_notify` means: the end of the stream, as the HTTP framing above
//! decides whether the answer was complete (Docker daemons, collectors and
//! registries often close that way). The WebSocket opts out
//! ([`Stream::report_unclean_close`]), since its closing handshake, not TLS,
//! says whether the peer finished. Socket timeouts are the caller's.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

use super::NetError;

/// A connection: plain TCP or TLS over TCP.
pub struct Stream {
    kind: Kind,
    /// Reads report a close without `close_notify` as `UnexpectedEof`.
    unclean_close_is_error: bool,
}

enum Kind {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Plain TCP.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream {
            kind: Kind::Plain(tcp),
            unclean_close_is_error: false,
        }
    }

    /// The same stream, its reads reporting a TLS peer's close without
    /// `close_notify` as an `UnexpectedEof` error rather than the end of
    /// the stream: for the WebSocket, whose closing handshake decides.
    pub fn report_unclean_close(mut self) -> Stream {
        self.unclean_close_is_error = true;
        self
    }

    /// The TCP socket underneath (timeouts, non-blocking mode, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match &self.kind {
            Kind::Plain(s) => s,
            Kind::Tls(s) => &s.sock,
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
        match &mut self.kind {
            Kind::Plain(s) => s.read(buf),
            Kind::Tls(s) => match s.read(buf) {
                Err(e)
                    if e.kind() == io::ErrorKind::UnexpectedEof && !self.unclean_close_is_error =>
                {
                    Ok(0)
                }
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Plain(s) => s.write(buf),
            Kind::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Plain(s) => s.flush(),
            Kind::Tls(s) => s.flush(),
        }
    }
}

/// The rustls client handshake over `tcp`, naming `host` (SNI and the name
/// the certificate must carry), bounded by the socket's own timeouts.
pub fn tls_handshake(
    mut tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
) -> Result<Stream, NetError> {
    let tls_err = |source| NetError::Tls {
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
    Ok(Stream {
        kind: Kind::Tls(Box::new(StreamOwned::new(conn, tcp))),
        unclean_close_is_error: false,
    })
}
