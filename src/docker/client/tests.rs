//! The pool against a real Unix socket server that closes idle connections,
//! as a restarted daemon leaves them.

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;

use super::*;
use crate::docker::Endpoint;

/// Reads one request head and returns its request line.
fn request_line(conn: &UnixStream) -> String {
    let mut reader = BufReader::new(conn);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
        line.clear();
    }
    first.trim_end().to_owned()
}

fn request(method: &'static str, target: &str) -> Request<'static> {
    Request {
        method,
        target: target.into(),
        headers: Vec::new(),
        body: Body::Empty,
        timeout: Some(Duration::from_secs(10)),
        abort: None,
    }
}

#[test]
fn a_post_on_a_pooled_connection_the_daemon_closed_is_sent_again_on_a_new_one() {
    let dir = std::env::temp_dir().join(format!("oz-client-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("d.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap();
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let (mut first, _) = listener.accept().unwrap();
        lines.push(request_line(&first));
        first
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        // shutdown, not only close: a child forked by another test thread
        // may hold a copy of this fd for an instant, keeping it open.
        first.shutdown(std::net::Shutdown::Both).unwrap();
        drop(first);
        closed_tx.send(()).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        lines.push(request_line(&second));
        second
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap();
        lines
    });

    let client = Client::new(Connector::new(Endpoint::Unix(socket)).unwrap());
    let body = client
        .send(request("GET", "/_ping"))
        .unwrap()
        .read_limited(16)
        .unwrap();
    assert_eq!(body, b"ok");
    closed_rx.recv().unwrap();
    let resp = client
        .send(request("POST", "/containers/abc/start"))
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        server.join().unwrap(),
        ["GET /_ping HTTP/1.1", "POST /containers/abc/start HTTP/1.1"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
