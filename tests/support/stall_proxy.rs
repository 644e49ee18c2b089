//! A TCP proxy in front of a registry that forwards every response in full
//! except blob downloads: of each `GET …/blobs/…` response it forwards the
//! first `blob_bytes` bytes and then stops forwarding, keeping both sockets
//! open, as a registry or network that hangs mid-download does. Or, made
//! with [`StallProxy::throttled`], it forwards everything but no faster than
//! a given rate, as a slow link does.
//!
//! Owns its listener, one pair of threads per connection and the sockets;
//! dropping it shuts every socket down. Plain std threads, no HTTP parsing
//! beyond spotting request lines (HTTP/1.1 without pipelining: a response
//! follows the request that asked for it, so a request line arms the cut for
//! the response after it).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    /// Blob responses cut so far.
    stalled: Mutex<usize>,
    changed: Condvar,
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.sockets.lock().unwrap().push(c);
        }
    }
}

/// The running proxy; everything closes when it drops.
pub struct StallProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl StallProxy {
    /// Listens on 127.0.0.1 (a free port) and relays to `upstream`.
    pub fn start(upstream: SocketAddr, blob_bytes: usize) -> StallProxy {
        Self::with(upstream, blob_bytes, None)
    }

    /// Relays everything to `upstream`, answers at most `bytes_per_second`.
    pub fn throttled(upstream: SocketAddr, bytes_per_second: usize) -> StallProxy {
        Self::with(upstream, usize::MAX, Some(bytes_per_second))
    }

    fn with(upstream: SocketAddr, blob_bytes: usize, rate: Option<usize>) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                s.keep(&client);
                s.keep(&server);
                relay(client, server, blob_bytes, rate, s.clone());
            }
        });
        StallProxy { addr, shared }
    }

    /// `127.0.0.1:PORT`: the registry part of image references through it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many blob responses were cut short so far.
    pub fn stalled(&self) -> usize {
        *self.shared.stalled.lock().unwrap()
    }

    /// Waits until at least one blob response has been cut; false on timeout.
    pub fn wait_stalled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = self.shared.stalled.lock().unwrap();
        while *n == 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            n = self
                .shared
                .changed
                .wait_timeout(n, deadline - now)
                .unwrap()
                .0;
        }
        true
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        {
            let _guard = self.shared.stalled.lock().unwrap();
            self.shared.changed.notify_all();
        }
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Bytes of the next blob response still allowed through; `None`: no limit.
type Budget = Arc<Mutex<Option<usize>>>;

fn relay(
    client: TcpStream,
    server: TcpStream,
    blob_bytes: usize,
    rate: Option<usize>,
    shared: Arc<Shared>,
) {
    let budget: Budget = Arc::default();
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let b = budget.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut line = Vec::new();
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            // Arm before forwarding: the response cannot come earlier.
            for &byte in &buf[..n] {
                if byte == b'\n' {
                    let text = String::from_utf8_lossy(&line);
                    if text.starts_with("GET ") && text.contains("/blobs/") {
                        *b.lock().unwrap() = Some(blob_bytes);
                    }
                    line.clear();
                } else if line.len() < 4096 {
                    line.push(byte);
                }
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    std::thread::spawn(move || {
        // Throttled: 4 KiB reads, each held back until the rate allows it.
        let mut buf = vec![0u8; if rate.is_some() { 4096 } else { 16 * 1024 }];
        let started = Instant::now();
        let mut sent = 0usize;
        while let Ok(n) = s_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(rate) = rate {
                sent += n;
                let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
                // The link's speed is the behaviour under test, not a wait for an event.
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            let allowed = {
                let mut b = budget.lock().unwrap();
                match b.as_mut() {
                    None => n,
                    Some(left) => {
                        let k = n.min(*left);
                        *left -= k;
                        k
                    }
                }
            };
            if c_write.write_all(&buf[..allowed]).is_err() {
                break;
            }
            if allowed < n {
                stall(&shared);
                return;
            }
        }
        let _ = c_write.shutdown(Shutdown::Write);
    });
}

/// Counts the cut and holds the connection open until the proxy drops.
fn stall(shared: &Shared) {
    let mut n = shared.stalled.lock().unwrap();
    *n += 1;
    shared.changed.notify_all();
    while !shared.stop.load(Ordering::SeqCst) {
        n = shared.changed.wait(n).unwrap();
    }
}
