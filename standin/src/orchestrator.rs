//! The stand-in orchestrator: a WebSocket server on 127.0.0.1 that a worker
//! connects to.
//!
//! Owns its listener and one serving thread per accepted connection; the
//! newest connection is the current one (an older one is closed when a newer
//! arrives). It records every handshake and every frame received, answers
//! pings (tungstenite queues the pong on read; every loop flushes), and lets a
//! test push frames, drop the connection, go silent or refuse a handshake.
//! Waiting is on a condvar signalled by every recorded event.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use serde_json::Value;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::certs::TestCa;

/// The path the real orchestrator serves workers on.
pub const WORKER_PATH: &str = "/api/v1/selfhosted/worker/ws";

/// How often a serving thread looks at its commands while waiting for frames.
const TICK: Duration = Duration::from_millis(5);

/// How to start the stand-in.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve `wss://` with a throwaway CA instead of `ws://`.
    pub tls: bool,
}

/// One WebSocket upgrade request the stand-in saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Request path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The status it was refused with, if it was.
    pub rejected_with: Option<u16>,
    /// When it arrived.
    pub at: Instant,
}

/// Everything recorded so far.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Every upgrade request, in order.
    pub handshakes: Vec<Handshake>,
    /// Every text frame received, parsed (a non-JSON frame is kept as a JSON string).
    pub received: Vec<Value>,
    /// The code of every Close frame received.
    pub close_codes: Vec<u16>,
    /// Whether a worker is connected now.
    pub connected: bool,
}

#[derive(Default)]
struct State {
    rec: Recorded,
    current: u64,
    next_id: u64,
    outgoing: VecDeque<Message>,
    drop_requested: Option<u64>,
    silent: bool,
    reject: VecDeque<u16>,
    date: Option<String>,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    tls: Option<TestCa>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// The running stand-in; stops (and closes the connection) when dropped.
pub struct Orchestrator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl Orchestrator {
    /// Binds 127.0.0.1 on a free port and starts accepting.
    pub fn start(opts: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in orchestrator");
        let addr = listener.local_addr().expect("stand-in address");
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            tls: opts.tls.then(TestCa::generate),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let (i, stop) = (Arc::clone(&inner), Arc::clone(&stopping));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let i = Arc::clone(&i);
                std::thread::spawn(move || accept(stream, &i));
            }
        });
        Self {
            inner,
            addr,
            stopping,
        }
    }

    /// `ws://127.0.0.1:<port>/api/v1/selfhosted/worker/ws` (or `wss://`).
    pub fn url(&self) -> String {
        self.url_for_host(&self.addr.ip().to_string())
    }

    /// The URL with another host name (one the test maps to this server).
    pub fn url_for_host(&self, host: &str) -> String {
        let scheme = if self.inner.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{host}:{}{WORKER_PATH}", self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA's certificate (PEM) when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.inner.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// Sends a JSON value as one text frame on the current connection;
    /// false when no worker is connected.
    pub fn send(&self, json: &Value) -> bool {
        self.send_message(Message::text(json.to_string()))
    }

    /// Sends raw text (for malformed-frame tests).
    pub fn send_text(&self, text: &str) -> bool {
        self.send_message(Message::text(text.to_owned()))
    }

    /// Sends any WebSocket message.
    pub fn send_message(&self, msg: Message) -> bool {
        let mut st = self.inner.lock();
        if !st.rec.connected {
            return false;
        }
        st.outgoing.push_back(msg);
        true
    }

    /// Waits until `pred` holds for the received frames and returns them;
    /// panics with what arrived if `timeout` passes first.
    pub fn wait_for(&self, pred: impl Fn(&[Value]) -> bool, timeout: Duration) -> Vec<Value> {
        match self.try_wait_for(pred, timeout) {
            Some(v) => v,
            None => panic!(
                "timed out after {timeout:?}; received so far: {:?}",
                self.received()
            ),
        }
    }

    /// Like [`Self::wait_for`], `None` on timeout.
    pub fn try_wait_for(
        &self,
        pred: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Option<Vec<Value>> {
        let mut out = None;
        self.wait_until(
            |r| {
                let ok = pred(&r.received);
                if ok {
                    out = Some(r.received.clone());
                }
                ok
            },
            timeout,
        );
        out
    }

    /// Waits until `pred` holds for everything recorded; false on timeout.
    pub fn wait_until(&self, mut pred: impl FnMut(&Recorded) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if pred(&st.rec) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> Recorded {
        self.inner.lock().rec.clone()
    }

    /// Every text frame received so far.
    pub fn received(&self) -> Vec<Value> {
        self.inner.lock().rec.received.clone()
    }

    /// Every upgrade request so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.inner.lock().rec.handshakes.clone()
    }

    /// The code of the last Close frame received.
    pub fn close_code(&self) -> Option<u16> {
        self.inner.lock().rec.close_codes.last().copied()
    }

    /// Whether a worker is connected now.
    pub fn is_connected(&self) -> bool {
        self.inner.lock().rec.connected
    }

    /// Closes the current connection abruptly (no Close frame), after reading
    /// whatever the worker already sent, as a server going down would.
    /// Returns once the socket is closed.
    pub fn drop_connection(&self) {
        let id = {
            let mut st = self.inner.lock();
            if !st.rec.connected {
                return;
            }
            st.drop_requested = Some(st.current);
            st.current
        };
        self.inner.changed.notify_all();
        let mut st = self.inner.lock();
        while st.drop_requested == Some(id) && st.current == id {
            st = self
                .inner
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops (or resumes) reading and answering pings on the current
    /// connection, to play a dead peer; a new connection starts responsive.
    pub fn set_silent(&self, silent: bool) {
        self.inner.update(|s| s.silent = silent);
    }

    /// Refuses the next upgrade request with this HTTP status.
    pub fn reject_next_handshake(&self, status: u16) {
        self.reject_handshakes(status, 1);
    }

    /// Accepts upgrade requests again (forgets queued refusals).
    pub fn accept_handshakes(&self) {
        self.inner.update(|s| s.reject.clear());
    }

    /// Sends this `Date` header with every accepted upgrade (`None`: no
    /// header, tungstenite's default), so a test can play a server whose
    /// clock differs from ours.
    pub fn set_date_header(&self, date: Option<String>) {
        self.inner.update(|s| s.date = date);
    }

    /// Refuses the next `count` upgrade requests with this HTTP status.
    pub fn reject_handshakes(&self, status: u16, count: usize) {
        self.inner
            .update(|s| s.reject.extend(std::iter::repeat_n(status, count)));
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.inner.update(|s| s.stop = true);
        // Unblocks the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The byte stream of one accepted connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

fn accept(tcp: TcpStream, inner: &Arc<Inner>) {
    if inner.lock().stop {
        return;
    }
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let conn = match &inner.tls {
        Some(ca) => match ServerConnection::new(Arc::clone(&ca.server_config)) {
            Ok(c) => Conn::Tls(Box::new(StreamOwned::new(c, tcp))),
            Err(_) => return,
        },
        None => Conn::Plain(tcp),
    };
    // The signature is tungstenite's Callback; its Err type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let (reject, date) = {
            let mut st = inner.lock();
            let reject = st.reject.pop_front();
            st.rec.handshakes.push(Handshake {
                path: req.uri().path().to_owned(),
                query: req.uri().query().unwrap_or_default().to_owned(),
                authorization: req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                rejected_with: reject,
                at: Instant::now(),
            });
            (reject, st.date.clone())
        };
        if let Some(value) = date.and_then(|d| HeaderValue::from_str(&d).ok()) {
            resp.headers_mut().insert("date", value);
        }
        inner.changed.notify_all();
        match reject {
            Some(code) => {
                let mut e = ErrorResponse::new(Some("refused by the stand-in".into()));
                *e.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED);
                Err(e)
            }
            None => Ok(resp),
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(ws) = tungstenite::accept_hdr_with_config(conn, callback, Some(config)) else {
        return;
    };
    let id = {
        let mut st = inner.lock();
        st.next_id += 1;
        st.current = st.next_id;
        st.outgoing.clear();
        st.drop_requested = None;
        st.silent = false;
        st.rec.connected = true;
        st.current
    };
    inner.changed.notify_all();
    serve(ws, id, inner);
}

/// What the serving thread should do next.
enum Step {
    Go { out: Vec<Message>, silent: bool },
    Drop,
    Leave,
}

fn serve(mut ws: WebSocket<Conn>, id: u64, inner: &Inner) {
    let _ = ws.get_ref().tcp().set_read_timeout(Some(TICK));
    loop {
        let step = {
            let mut st = inner.lock();
            if st.stop || st.current != id {
                Step::Leave
            } else if st.drop_requested == Some(id) {
                Step::Drop
            } else {
                Step::Go {
                    out: st.outgoing.drain(..).collect(),
                    silent: st.silent,
                }
            }
        };
        let (out, silent) = match step {
            Step::Go { out, silent } => (out, silent),
            Step::Drop => {
                // Take in what is already on the wire, answer its pings, then hang up.
                while read_one(&mut ws, inner) == Read1::Frame {}
                let _ = ws.flush();
                break;
            }
            Step::Leave => break,
        };
        for m in out {
            let _ = ws.write(m);
        }
        if silent {
            let st = inner.lock();
            let _ = inner.changed.wait_timeout(st, TICK);
            continue;
        }
        let _ = ws.flush();
        if read_one(&mut ws, inner) == Read1::Closed {
            break;
        }
    }
    if let Conn::Tls(tls) = ws.get_mut() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    let _ = ws.get_ref().tcp().shutdown(Shutdown::Both);
    inner.update(|st| {
        if st.current == id {
            st.rec.connected = false;
            st.drop_requested = None;
        }
    });
}

#[derive(PartialEq)]
enum Read1 {
    Frame,
    Nothing,
    Closed,
}

fn read_one(ws: &mut WebSocket<Conn>, inner: &Inner) -> Read1 {
    match ws.read() {
        Ok(Message::Text(t)) => {
            let v = serde_json::from_str(t.as_str()).unwrap_or(Value::String(t.to_string()));
            inner.update(|st| st.rec.received.push(v));
            Read1::Frame
        }
        Ok(Message::Close(frame)) => {
            let code = frame.map_or(1005, |f| u16::from(f.code));
            inner.update(|st| st.rec.close_codes.push(code));
            // tungstenite has queued the Close reply; send it.
            let _ = ws.flush();
            Read1::Frame
        }
        Ok(_) => Read1::Frame,
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Read1::Nothing
        }
        Err(_) => Read1::Closed,
    }
}
