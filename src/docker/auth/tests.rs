//! Credential lookup against real files and a real helper program.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::*;

/// A private directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oz-auth-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_with_config(dir: &TempDir, config: &str) -> CredentialEnv {
    dir.write("cfg/config.json", config);
    CredentialEnv {
        docker_config: Some(dir.0.join("cfg")),
        home: None,
        auth_config: None,
        path: None,
        helper_timeout: Duration::from_secs(20),
    }
}

fn password(user: &str, pass: &str, server: &str) -> Option<RegistryAuth> {
    Some(RegistryAuth::Password {
        username: user.into(),
        password: pass.into(),
        server_address: server.into(),
    })
}

fn token(token: &str, server: &str) -> Option<RegistryAuth> {
    Some(RegistryAuth::IdentityToken {
        token: token.into(),
        server_address: server.into(),
    })
}

#[test]
fn base64_rfc4648_vectors() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(base64::encode_standard(plain.as_bytes()), encoded);
        assert_eq!(base64::encode_url(plain.as_bytes()), encoded);
        assert_eq!(
            base64::decode_standard(encoded).unwrap(),
            plain.as_bytes(),
            "{encoded}"
        );
    }
    // The two alphabets differ only in 62 and 63.
    assert_eq!(base64::encode_standard(&[0xfb, 0xff]), "+/8=");
    assert_eq!(base64::encode_url(&[0xfb, 0xff]), "-_8=");
    assert_eq!(base64::decode_standard("+/8=").unwrap(), vec![0xfb, 0xff]);
    assert_eq!(base64::decode_standard("Zm8").unwrap(), b"fo");
    for bad in ["Zm9v!", "-_8=", "Z", "Zm=v", "Zm9vY==="] {
        assert_eq!(base64::decode_standard(bad), None, "{bad}");
    }
}

#[test]
fn header_value_is_exact() {
    let auth = password("u", "p@ss:w/rd?", DOCKER_HUB_KEY).unwrap();
    assert_eq!(
        auth.header_value(),
        "eyJwYXNzd29yZCI6InBAc3M6dy9yZD8iLCJzZXJ2ZXJhZGRyZXNzIjoiaHR0cHM6Ly9pbmRleC5kb2NrZXIuaW8vdjEvIiwidXNlcm5hbWUiOiJ1In0="
    );
    let auth = token("tok>>?", "reg.example:5000").unwrap();
    assert_eq!(
        auth.header_value(),
        "eyJpZGVudGl0eXRva2VuIjoidG9rPj4_Iiwic2VydmVyYWRkcmVzcyI6InJlZy5leGFtcGxlOjUwMDAifQ=="
    );
}

const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[test]
fn debug_redacts_secrets() {
    let shown = format!(
        "{:?} {:?}",
        password("alice", "hunter2", "r").unwrap(),
        token("tok-secret", "r").unwrap()
    );
    assert!(shown.contains("alice"));
    assert!(!shown.contains("hunter2") && !shown.contains("tok-secret"));
    let env = CredentialEnv {
        auth_config: Some(r#"{"auths":{"r":{"auth":"c2VjcmV0"}}}"#.into()),
        ..CredentialEnv::from_process()
    };
    assert!(!format!("{env:?}").contains("c2VjcmV0"));
}

#[test]
fn auths_entries_from_the_file() {
    let dir = TempDir::new();
    let env = env_with_config(
        &dir,
        r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcjpldA=="},
            "reg.example:5000":{"username":"bob","password":"pw"},
            "https://legacy.example/v1/":{"auth":"YWxpY2U6czNjcjpldA=="},
            "tok.example":{"identitytoken":"idt","auth":""},
            "empty.example":{}
        },"other":{"ignored":true}}"#,
    );
    assert_eq!(
        lookup(DOCKER_HUB_KEY, &env),
        Ok(password("alice", "s3cr:et", DOCKER_HUB_KEY))
    );
    assert_eq!(
        lookup("reg.example:5000", &env),
        Ok(password("bob", "pw", "reg.example:5000"))
    );
    // A legacy key with scheme and path matches its bare host.
    assert_eq!(
        lookup("legacy.example", &env),
        Ok(password("alice", "s3cr:et", "legacy.example"))
    );
    assert_eq!(lookup("tok.example", &env), Ok(token("idt", "tok.example")));
    assert_eq!(lookup("empty.example", &env), Ok(None));
    assert_eq!(lookup("other.example", &env), Ok(None));
}

#[test]
fn home_fallback_and_missing_files() {
    let dir = TempDir::new();
    dir.write(
        "home/.docker/config.json",
        r#"{"auths":{"h.example":{"auth":"YWxpY2U6czNjcjpldA=="}}}"#,
    );
    let mut env = CredentialEnv {
        docker_config: None,
        home: Some(dir.0.join("home")),
        auth_config: None,
        path: None,
        helper_timeout: HELPER_TIMEOUT,
    };
    assert_eq!(
        lookup("h.example", &env),
        Ok(password("alice", "s3cr:et", "h.example"))
    );
    // DOCKER_CONFIG wins over HOME even when its file is missing.
    env.docker_config = Some(dir.0.join("nowhere"));
    assert_eq!(lookup("h.example", &env), Ok(None));
    env.docker_config = None;
    env.home = None;
    assert_eq!(lookup("h.example", &env), Ok(None));
}

#[test]
fn docker_auth_config_comes_first_then_the_file() {
    let dir = TempDir::new();
    let mut env = env_with_config(
        &dir,
        r#"{"auths":{"a.example":{"username":"file","password":"f"},
                     "b.example":{"username":"file","password":"f"}}}"#,
    );
    env.auth_config =
        Some(r#"{"auths":{"a.example":{"username":"inline","password":"i"}}}"#.into());
    assert_eq!(
        lookup("a.example", &env),
        Ok(password("inline", "i", "a.example"))
    );
    assert_eq!(
        lookup("b.example", &env),
        Ok(password("file", "f", "b.example"))
    );
}

#[test]
fn malformed_configs_are_errors_without_secrets() {
    let dir = TempDir::new();
    let env = env_with_config(&dir, "{\"auths\":{\"a\":{\"password\":\"hunter2\"}}, oops}");
    let err = lookup("a", &env).unwrap_err();
    let source = dir.0.join("cfg/config.json").display().to_string();
    assert_eq!(
        err,
        AuthError::ParseConfig {
            source: source.clone(),
            line: 1,
            column: 40
        }
    );
    assert!(!err.to_string().contains("hunter2"));

    // A wrong type: serde's own message would quote the value.
    let env = env_with_config(&dir, r#"{"auths":{"a":{"password":12345678}}}"#);
    let err = lookup("a", &env).unwrap_err();
    assert!(!err.to_string().contains("12345678"), "{err}");

    let env = env_with_config(&dir, r#"{"auths":{"a":{"auth":"bm9jb2xvbg=="}}}"#);
    assert_eq!(
        lookup("a", &env),
        Err(AuthError::BadAuthField {
            source: source.clone(),
            key: "a".into()
        })
    );
    assert_eq!(
        lookup("a", &env).unwrap_err().to_string(),
        format!(
            "Docker config {source}: the \"auth\" of \"a\" is not base64 of user:password; run `docker login` again"
        )
    );
    let env = env_with_config(&dir, r#"{"auths":{"a":{"auth":"%%%"}}}"#);
    assert!(matches!(
        lookup("a", &env),
        Err(AuthError::BadAuthField { .. })
    ));
    let env = env_with_config(&dir, "  \n");
    assert_eq!(lookup("a", &env), Ok(None));
}

const HELPER: &str = r#"#!/bin/sh
[ "$1" = get ] || exit 3
# Keep any trailing newline: the key must arrive without one.
key=$(cat; echo x)
key=${key%x}
case "$key" in
  reg.example:5000) printf '{"ServerURL":"%s","Username":"u1","Secret":"p1"}' "$key" ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"hub","Username":"hubuser","Secret":"hubpw"}' ;;
  tok.example) printf '{"ServerURL":"x","Username":"<token>","Secret":"idtok"}' ;;
  missing.example) echo "credentials not found in native keychain"; exit 1 ;;
  broken.example) echo "keychain is locked" >&2; exit 2 ;;
  garbage.example) echo "password=p1 not json"; exit 0 ;;
  empty.example) printf '{"ServerURL":"x","Username":"","Secret":""}' ;;
  slow.example) exec sleep 30 ;;
  *) echo "unexpected key [$key]"; exit 4 ;;
esac
"#;

// One test runs every helper case in turn: writing an executable while
// another test thread forks could make exec fail with ETXTBSY.
#[test]
fn credential_helpers() {
    let dir = TempDir::new();
    let script = dir.write("bin/docker-credential-test", HELPER);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = env_with_config(
        &dir,
        r#"{"credsStore":"test",
            "credHelpers":{"helped.example":"test","nohelper.example":"absent","blank.example":""},
            "auths":{"reg.example:5000":{"username":"file","password":"f"},
                     "blank.example":{"username":"file","password":"f"}}}"#,
    );
    env.path = Some(OsString::from(format!(
        "/nonexistent:{}",
        dir.0.join("bin").display()
    )));

    // credsStore wins over auths, and the key arrives without a newline.
    assert_eq!(
        lookup("reg.example:5000", &env),
        Ok(password("u1", "p1", "reg.example:5000"))
    );
    assert_eq!(
        lookup(DOCKER_HUB_KEY, &env),
        Ok(password("hubuser", "hubpw", DOCKER_HUB_KEY))
    );
    assert_eq!(
        lookup("tok.example", &env),
        Ok(token("idtok", "tok.example"))
    );
    assert_eq!(lookup("missing.example", &env), Ok(None));
    assert_eq!(lookup("empty.example", &env), Ok(None));
    assert_eq!(
        lookup("broken.example", &env),
        Err(AuthError::HelperFailed {
            program: "docker-credential-test".into(),
            code: Some(2),
        })
    );
    assert_eq!(
        lookup("broken.example", &env).unwrap_err().to_string(),
        "credential helper docker-credential-test exited with status 2 (its output is not shown, as it may hold a credential; run `docker-credential-test get` by hand to see it)"
    );
    let err = lookup("garbage.example", &env).unwrap_err();
    assert_eq!(
        err,
        AuthError::HelperAnswer {
            program: "docker-credential-test".into()
        }
    );
    assert!(!err.to_string().contains("p1"));
    // credHelpers names its own helper; one missing from PATH is an error.
    assert_eq!(
        lookup("nohelper.example", &env),
        Err(AuthError::HelperNotFound {
            program: "docker-credential-absent".into()
        })
    );
    // An empty credHelpers entry opts the registry out of credsStore (as
    // the CLI's getConfiguredCredentialStore does): auths are used.
    assert_eq!(
        lookup("blank.example", &env),
        Ok(password("file", "f", "blank.example"))
    );
    // A key the helper does not expect: its failure output is not quoted.
    assert_eq!(
        lookup("odd.example", &env),
        Err(AuthError::HelperFailed {
            program: "docker-credential-test".into(),
            code: Some(4),
        })
    );

    env.helper_timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(
        lookup("slow.example", &env),
        Err(AuthError::HelperTimeout {
            program: "docker-credential-test".into(),
            after: Duration::from_millis(300)
        })
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Without credsStore, auths are used again.
    let mut env = env_with_config(
        &dir,
        r#"{"auths":{"reg.example:5000":{"username":"file","password":"f"}}}"#,
    );
    env.path = Some(dir.0.join("bin").into_os_string());
    assert_eq!(
        lookup("reg.example:5000", &env),
        Ok(password("file", "f", "reg.example:5000"))
    );
}
