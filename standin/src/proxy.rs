//! A real HTTP `CONNECT` proxy on 127.0.0.1 that tunnels bytes both ways and
//! records each tunnel it was asked for.
//!
//! Owns only its listener and tunnels. Host aliases let a test name a host
//! (e.g. [`crate::TEST_HOST`]) that resolves, at the proxy only, to a local
//! address.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};

/// One `CONNECT` request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRecord {
    /// The `host:port` asked for.
    pub target: String,
    /// The `Proxy-Authorization` header, if one came.
    pub proxy_authorization: Option<String>,
}

#[derive(Default)]
struct State {
    records: Vec<ConnectRecord>,
    aliases: HashMap<String, SocketAddr>,
}

/// The running proxy; its listener lives as long as the test process.
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ConnectProxy {
    /// Starts listening on 127.0.0.1 on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(client, &s));
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `host` resolve to `to` for tunnels through this proxy.
    pub fn alias(&self, host: &str, to: SocketAddr) {
        self.lock().aliases.insert(host.to_ascii_lowercase(), to);
    }

    /// Every `CONNECT` so far, in arrival order.
    pub fn connects(&self) -> Vec<ConnectRecord> {
        self.lock().records.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve(mut client: TcpStream, state: &Mutex<State>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    let alias = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.records.push(ConnectRecord {
            target: target.to_owned(),
            proxy_authorization: auth,
        });
        let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
        st.aliases.get(&host.to_ascii_lowercase()).copied()
    };
    let upstream = match alias {
        Some(addr) => TcpStream::connect(addr),
        None => target
            .to_socket_addrs()
            .and_then(|mut a| a.next().ok_or(std::io::ErrorKind::NotFound.into()))
            .and_then(TcpStream::connect),
    };
    let Ok(upstream) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut client, mut upstream) = (client, upstream);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
}
