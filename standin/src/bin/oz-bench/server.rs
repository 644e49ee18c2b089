//! A minimal orchestrator for timing: one plain WebSocket on 127.0.0.1 that
//! the bench thread itself writes and reads, so a send is on the wire when
//! [`BenchServer::send`] returns and a frame's arrival time is taken the
//! moment it is parsed. (The stand-in `Orchestrator` queues sends for a
//! serving thread that looks every few milliseconds: fine for tests, too
//! coarse for sub-millisecond latencies.) Pings are answered by tungstenite
//! on every read, so the caller must keep reading while it waits.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, WebSocket};

use crate::error::{BenchError, Result, io};

/// The listener and, once a worker connected, its WebSocket.
pub struct BenchServer {
    listener: TcpListener,
    ws: Option<WebSocket<TcpStream>>,
}

impl BenchServer {
    /// Listens on a free loopback port.
    pub fn bind() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding 127.0.0.1:0"))?;
        Ok(Self { listener, ws: None })
    }

    /// The URL to give the worker.
    pub fn url(&self) -> Result<String> {
        let addr = self
            .listener
            .local_addr()
            .map_err(io("reading the listening address"))?;
        Ok(format!("ws://{addr}{}", oz_standin::WORKER_PATH))
    }

    /// Waits up to `timeout` for the worker's connection and upgrades it.
    pub fn accept(&mut self, timeout: Duration) -> Result<()> {
        self.listener
            .set_nonblocking(true)
            .map_err(io("making the listener non-blocking"))?;
        let deadline = Instant::now() + timeout;
        let tcp = loop {
            match self.listener.accept() {
                Ok((tcp, _)) => break tcp,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(BenchError::Timeout {
                            what: "the worker to connect".into(),
                        });
                    }
                    poll_readable(&self.listener, deadline);
                }
                Err(e) => return Err(io("accepting the worker")(e)),
            }
        };
        tcp.set_nonblocking(false)
            .map_err(io("making the connection blocking"))?;
        tcp.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("setting a read timeout"))?;
        let ws = tungstenite::accept(tcp).map_err(|e| BenchError::Unexpected {
            what: format!("WebSocket handshake failed: {e}"),
        })?;
        self.ws = Some(ws);
        Ok(())
    }

    /// Sends one JSON text frame and flushes it; returns when it was written.
    pub fn send(&mut self, json: &Value) -> Result<Instant> {
        let ws = self.ws()?;
        ws.send(Message::text(json.to_string()))
            .map_err(|e| ws_err("sending a frame to the worker", e))?;
        Ok(Instant::now())
    }

    /// The next JSON text frame and when it was parsed, or `None` once
    /// `deadline` passes. Answers pings meanwhile.
    pub fn recv(&mut self, deadline: Instant) -> Result<Option<(Instant, Value)>> {
        let ws = self.ws()?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            ws.get_mut()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(io("setting a read timeout"))?;
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let at = Instant::now();
                    let v = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    return Ok(Some((at, v)));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(ws_err("reading from the worker", e)),
            }
        }
    }

    /// Drops the connection (the worker sees EOF right after the Close
    /// handshake, as from a real server, instead of waiting for it).
    pub fn hang_up(&mut self) {
        self.ws = None;
    }

    /// Reads (and so answers pings) until `deadline`, discarding frames.
    pub fn idle_until(&mut self, deadline: Instant) -> Result<()> {
        while self.recv(deadline)?.is_some() {}
        Ok(())
    }

    fn ws(&mut self) -> Result<&mut WebSocket<TcpStream>> {
        self.ws.as_mut().ok_or_else(|| BenchError::Unexpected {
            what: "no worker connected".into(),
        })
    }
}

fn ws_err(what: &'static str, e: tungstenite::Error) -> BenchError {
    BenchError::WebSocket {
        what,
        source: Box::new(e),
    }
}

/// Blocks until the listener has a connection waiting or `deadline` passes.
fn poll_readable(listener: &TcpListener, deadline: Instant) {
    use std::os::fd::AsRawFd;
    let ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut fd, 1, ms);
    }
}
