//! Discovery rules, each against a temp dir standing in for `/`.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Root(PathBuf);

impl Root {
    fn new() -> Root {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oz-discovery-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }

    fn write(&self, path: &str, text: &str) {
        let p = under(&self.0, path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn run(&self, vars: &[(&str, &str)]) -> Result<Target> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        discover(&|k| map.get(k).cloned(), &self.0)
    }

    fn p(&self, path: &str) -> PathBuf {
        under(&self.0, path)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn meta(host: &str) -> String {
    format!(
        r#"{{"Name":"x","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
    )
}

const REMOTE_ID: &str = "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a";

#[test]
fn docker_host_forms() {
    let r = Root::new();
    let t = r.run(&[("DOCKER_HOST", "unix:///run/d.sock")]).unwrap();
    assert_eq!(t.endpoint, Endpoint::Unix(r.p("/run/d.sock")));
    assert_eq!(t.source, Source::DockerHost);
    let tcp = |host: &str, port| Endpoint::Tcp {
        host: host.into(),
        port,
        tls: None,
    };
    assert_eq!(
        r.run(&[("DOCKER_HOST", "tcp://10.0.0.1:2375")])
            .unwrap()
            .endpoint,
        tcp("10.0.0.1", 2375)
    );
    assert_eq!(
        r.run(&[("DOCKER_HOST", "tcp://dockerd")]).unwrap().endpoint,
        tcp("dockerd", 2375)
    );
    assert_eq!(
        r.run(&[("DOCKER_HOST", "dockerd:1234")]).unwrap().endpoint,
        tcp("dockerd", 1234)
    );
    assert_eq!(
        r.run(&[("DOCKER_HOST", "tcp://[::1]:99/")])
            .unwrap()
            .endpoint,
        tcp("::1", 99)
    );
    assert_eq!(
        r.run(&[("DOCKER_HOST", "tcp://:2375")]).unwrap().endpoint,
        tcp("127.0.0.1", 2375)
    );
}

#[test]
fn docker_host_errors() {
    let r = Root::new();
    let msg = |h: &str| r.run(&[("DOCKER_HOST", h)]).unwrap_err().to_string();
    assert_eq!(
        msg("ssh://me@host"),
        "cannot use Docker host \"ssh://me@host\": ssh:// is not supported; forward the daemon's socket (e.g. ssh -L) and use unix:// or tcp://"
    );
    assert_eq!(
        msg("npipe:////./pipe/docker"),
        "cannot use Docker host \"npipe:////./pipe/docker\": unsupported scheme; use unix:///path or tcp://host:port"
    );
    assert_eq!(
        msg("tcp://host:99999"),
        "cannot use Docker host \"tcp://host:99999\": the port is not a number from 1 to 65535"
    );
    assert_eq!(
        msg("unix://"),
        "cannot use Docker host \"unix://\": the unix:// address has no socket path"
    );
}

#[test]
fn tls_verify_with_cert_path_and_default_dir() {
    let r = Root::new();
    r.write("/certs/ca.pem", "x");
    r.write("/certs/cert.pem", "x");
    r.write("/certs/key.pem", "x");
    let t = r
        .run(&[
            ("DOCKER_HOST", "tcp://d:1"),
            ("DOCKER_TLS_VERIFY", "0"),
            ("DOCKER_CERT_PATH", "/certs"),
        ])
        .unwrap();
    assert_eq!(
        t.endpoint,
        Endpoint::Tcp {
            host: "d".into(),
            port: 1,
            tls: Some(TlsFiles {
                ca: Some(r.p("/certs/ca.pem")),
                client: Some((r.p("/certs/cert.pem"), r.p("/certs/key.pem"))),
            }),
        }
    );
    // No cert path: the config dir; no port: 2376 with TLS; CA named though absent.
    let t = r
        .run(&[
            ("DOCKER_HOST", "tcp://d"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("HOME", "/home/u"),
        ])
        .unwrap();
    assert_eq!(
        t.endpoint,
        Endpoint::Tcp {
            host: "d".into(),
            port: 2376,
            tls: Some(TlsFiles {
                ca: Some(r.p("/home/u/.docker/ca.pem")),
                client: None,
            }),
        }
    );
}

#[test]
fn docker_host_beats_context() {
    let r = Root::new();
    r.write(
        &format!("/cfg/contexts/meta/{REMOTE_ID}/meta.json"),
        &meta("tcp://remote:2375"),
    );
    let t = r
        .run(&[
            ("DOCKER_HOST", "unix:///a.sock"),
            ("DOCKER_CONTEXT", "remote"),
            ("DOCKER_CONFIG", "/cfg"),
        ])
        .unwrap();
    assert_eq!(t.endpoint, Endpoint::Unix(r.p("/a.sock")));
}

#[test]
fn docker_context_and_current_context() {
    let r = Root::new();
    r.write(
        &format!("/cfg/contexts/meta/{REMOTE_ID}/meta.json"),
        &meta("tcp://remote:2375"),
    );
    r.write(
        "/cfg/config.json",
        r#"{"auths":{},"currentContext":"remote"}"#,
    );
    let expected = Endpoint::Tcp {
        host: "remote".into(),
        port: 2375,
        tls: None,
    };
    let t = r.run(&[("DOCKER_CONFIG", "/cfg")]).unwrap();
    assert_eq!(
        (t.endpoint, t.source),
        (expected.clone(), Source::Context("remote".into()))
    );
    // DOCKER_CONTEXT wins over currentContext.
    let t = r
        .run(&[("DOCKER_CONFIG", "/cfg"), ("DOCKER_CONTEXT", "default")])
        .unwrap();
    assert_eq!(t.source, Source::Default);
    // A missing context is named, with the setting that chose it; its
    // meta/<sha256> storage path is not shown.
    let e = r
        .run(&[("DOCKER_CONFIG", "/cfg"), ("DOCKER_CONTEXT", "nope")])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "docker context \"nope\" (from DOCKER_CONTEXT) does not exist under {}; unset DOCKER_CONTEXT or set it to one that `docker context ls` lists",
            r.p("/cfg/contexts").display()
        )
    );
    r.write("/cfg/config.json", r#"{"currentContext":"gone"}"#);
    let e = r.run(&[("DOCKER_CONFIG", "/cfg")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "docker context \"gone\" (from currentContext in the docker config) does not exist under {}; run `docker context use default` or set DOCKER_CONTEXT to one that `docker context ls` lists",
            r.p("/cfg/contexts").display()
        )
    );
    // Unreadable metadata: named by context too.
    r.write(
        &format!("/cfg/contexts/meta/{REMOTE_ID}/meta.json"),
        "{not json",
    );
    let e = r
        .run(&[("DOCKER_CONFIG", "/cfg"), ("DOCKER_CONTEXT", "remote")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "docker client configuration context \"remote\": its metadata is not valid JSON: "
        ),
        "{e}"
    );
    assert!(!e.contains(REMOTE_ID), "{e}");
}

#[test]
fn context_tls_material() {
    let r = Root::new();
    r.write(
        &format!("/h/.docker/contexts/meta/{REMOTE_ID}/meta.json"),
        &meta("tcp://remote:2376"),
    );
    let tls = format!("/h/.docker/contexts/tls/{REMOTE_ID}/docker");
    r.write(&format!("{tls}/ca.pem"), "x");
    let t = r
        .run(&[("HOME", "/h"), ("DOCKER_CONTEXT", "remote")])
        .unwrap();
    assert_eq!(
        t.endpoint,
        Endpoint::Tcp {
            host: "remote".into(),
            port: 2376,
            tls: Some(TlsFiles {
                ca: Some(r.p(&format!("{tls}/ca.pem"))),
                client: None,
            }),
        }
    );
}

#[test]
fn default_and_rootless_sockets() {
    let r = Root::new();
    // Nothing exists: the default socket, so the error names it.
    let t = r
        .run(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/1000")])
        .unwrap();
    assert_eq!(t.endpoint, Endpoint::Unix(r.p("/var/run/docker.sock")));
    r.write("/h/.docker/run/docker.sock", "");
    let t = r
        .run(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/1000")])
        .unwrap();
    assert_eq!(
        t.endpoint,
        Endpoint::Unix(r.p("/h/.docker/run/docker.sock"))
    );
    r.write("/run/user/1000/docker.sock", "");
    let t = r
        .run(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/1000")])
        .unwrap();
    assert_eq!(
        t.endpoint,
        Endpoint::Unix(r.p("/run/user/1000/docker.sock"))
    );
    r.write("/var/run/docker.sock", "");
    let t = r
        .run(&[
            ("HOME", "/h"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("DOCKER_HOST", ""),
        ])
        .unwrap();
    assert_eq!(t.endpoint, Endpoint::Unix(r.p("/var/run/docker.sock")));
}

#[test]
fn api_version_pin() {
    let r = Root::new();
    assert_eq!(
        r.run(&[("DOCKER_API_VERSION", "1.43")])
            .unwrap()
            .api_version,
        Some("1.43".into())
    );
    assert_eq!(r.run(&[]).unwrap().api_version, None);
    assert_eq!(
        r.run(&[("DOCKER_API_VERSION", "latest")])
            .unwrap_err()
            .to_string(),
        "DOCKER_API_VERSION \"latest\" is not a version like 1.41"
    );
}
