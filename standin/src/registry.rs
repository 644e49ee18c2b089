//! A real image registry for tests: Debian's `docker-registry` (the CNCF
//! distribution server) on `127.0.0.1:<free port>`, plain HTTP (the Docker
//! daemon allows that on 127.0.0.0/8), optionally behind htpasswd basic auth.
//!
//! Owns the registry process, its temp storage and log, and a private
//! `DOCKER_CONFIG` for pushing; the images it pushes are untagged locally
//! afterwards. Needs `docker-registry` and `htpasswd` (apache2-utils) on PATH.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::relay::process::{FixtureError, Helper, TempDir, free_loopback_addr, io_err, run};

/// A registry user. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// A user/password pair.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to run the registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOpts {
    /// Require basic auth with this one user; `None` serves anyone.
    pub auth: Option<Credentials>,
}

/// A running registry; killed and its storage removed on drop.
#[derive(Debug)]
pub struct Registry {
    // Declared before `dir` so the process dies before its storage goes.
    helper: Helper,
    addr: SocketAddr,
    auth: Option<Credentials>,
    dir: TempDir,
}

impl Registry {
    /// Starts the registry and returns once `GET /v2/` answers.
    ///
    /// # Panics
    /// When it cannot be started; see [`Registry::try_start`].
    pub fn start(opts: RegistryOpts) -> Registry {
        Self::try_start(opts).unwrap_or_else(|e| panic!("test registry: {e}"))
    }

    /// As [`Registry::start`], returning the error instead. With auth, also
    /// logs the user in to [`Registry::docker_config`].
    pub fn try_start(opts: RegistryOpts) -> Result<Registry, FixtureError> {
        let dir = TempDir::new("registry")?;
        let storage = dir.path().join("data");
        fs::create_dir(&storage).map_err(io_err(format!("creating {}", storage.display())))?;
        let docker_config = dir.path().join("docker-config");
        fs::create_dir(&docker_config)
            .map_err(io_err(format!("creating {}", docker_config.display())))?;
        let htpasswd = match &opts.auth {
            Some(creds) => Some(write_htpasswd(dir.path(), creds)?),
            None => None,
        };
        let addr = free_loopback_addr()?;
        let config = dir.path().join("config.yml");
        fs::write(&config, config_yml(addr, &storage, htpasswd.as_deref()))
            .map_err(io_err(format!("writing {}", config.display())))?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut helper = Helper::spawn("docker-registry", cmd, dir.path().join("registry.log"))?;
        helper.wait_ready(addr, answers_v2)?;
        let registry = Registry {
            helper,
            addr,
            auth: opts.auth,
            dir,
        };
        if let Some(creds) = &registry.auth {
            registry.login(creds)?;
        }
        Ok(registry)
    }

    /// `127.0.0.1:PORT`: the registry part of its image references.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT/<repo_tag>`.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The user it requires, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.auth.as_ref()
    }

    /// A `DOCKER_CONFIG` directory whose `config.json` holds this registry's
    /// login (when it has auth): what a worker reads its credentials from.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    /// The registry's log so far, access-log lines included.
    pub fn log(&self) -> String {
        self.helper.log()
    }

    /// How many requests `METHOD <path_prefix>...` it has answered so far,
    /// e.g. `requests("GET", "/v2/team/agent/manifests/")`.
    pub fn requests(&self, method: &str, path_prefix: &str) -> usize {
        count_requests(&self.log(), method, path_prefix)
    }

    /// Tags `local_image` as `<addr>/<repo_tag>`, pushes it (logged in when
    /// the registry has auth), then removes that local tag so later pulls
    /// really come from the registry. Returns the pushed reference.
    pub fn push(&self, local_image: &str, repo_tag: &str) -> Result<String, FixtureError> {
        let target = self.image(repo_tag);
        docker(&["tag", local_image, &target], None)?;
        let pushed = self.docker_here(&["push", &target], None);
        let untagged = docker(&["image", "rm", &target], None);
        pushed?;
        untagged?;
        Ok(target)
    }

    fn login(&self, creds: &Credentials) -> Result<(), FixtureError> {
        let addr = self.addr.to_string();
        let args = [
            "login",
            "--username",
            creds.username.as_str(),
            "--password-stdin",
            addr.as_str(),
        ];
        self.docker_here(&args, Some(&creds.password)).map(drop)
    }

    /// `docker --config <ours> ...`.
    fn docker_here(&self, args: &[&str], input: Option<&str>) -> Result<String, FixtureError> {
        let config = self.docker_config().display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        docker(&all, input)
    }
}

fn docker(args: &[&str], input: Option<&str>) -> Result<String, FixtureError> {
    let shown = format!("docker {}", args.join(" "));
    run(Command::new("docker").args(args), &shown, input)
}

/// `htpasswd -Bbn` prints the bcrypt line; the password is on argv only for
/// that instant, and only ever a test password.
fn write_htpasswd(dir: &Path, creds: &Credentials) -> Result<PathBuf, FixtureError> {
    let line = run(
        Command::new("htpasswd").args(["-Bbn", &creds.username, &creds.password]),
        &format!("htpasswd -Bbn {} <password>", creds.username),
        None,
    )?;
    let path = dir.join("htpasswd");
    fs::write(&path, line.trim_end().to_string() + "\n")
        .map_err(io_err(format!("writing {}", path.display())))?;
    Ok(path)
}

/// The registry's config: loopback listener, filesystem storage, text logs
/// (access log on), deletes allowed, and htpasswd auth when given.
pub fn config_yml(addr: SocketAddr, storage: &Path, htpasswd: Option<&Path>) -> String {
    let mut yml = format!(
        "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    \
         rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        storage.display()
    );
    if let Some(path) = htpasswd {
        yml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: oz-test\n    path: {}\n",
            path.display()
        ));
    }
    yml
}

/// Counts access-log lines (`127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...`)
/// for `method` on a path starting with `path_prefix`.
pub fn count_requests(log: &str, method: &str, path_prefix: &str) -> usize {
    let needle = format!("\"{method} {path_prefix}");
    log.lines()
        .filter(|line| !line.starts_with("time=") && line.contains(&needle))
        .count()
}

/// True once the registry answers HTTP at all (200, or 401 with auth on).
fn answers_v2(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = concat!(
        "time=\"t\" level=info msg=\"response completed\" http.request.method=GET ",
        "http.request.uri=\"/v2/t/agent/manifests/v1\" \"GET /v2/t/agent/manifests/v1\n",
        "127.0.0.1 - - [21/Nov/2026:07:33:53 +0000] \"HEAD /v2/t/agent/manifests/v1 HTTP/1.1\" 200 524 \"\" \"docker\"\n",
        "127.0.0.1 - - [21/Nov/2026:07:33:53 +0000] \"GET /v2/t/agent/manifests/sha256:ab HTTP/1.1\" 200 524 \"\" \"docker\"\n",
        "127.0.0.1 - - [21/Nov/2026:07:33:54 +0000] \"GET /v2/t/agent/blobs/sha256:cd HTTP/1.1\" 200 9 \"\" \"docker\"\n",
        "127.0.0.1 - - [21/Nov/2026:07:33:55 +0000] \"GET /v2/t/agent/manifests/v1 HTTP/1.1\" 200 524 \"\" \"docker\"\n",
    );

    #[test]
    fn counts_only_access_log_lines_for_the_method_and_path() {
        assert_eq!(count_requests(LOG, "GET", "/v2/t/agent/manifests/"), 2);
        assert_eq!(count_requests(LOG, "HEAD", "/v2/t/agent/manifests/"), 1);
        assert_eq!(count_requests(LOG, "GET", "/v2/t/agent/"), 3);
        assert_eq!(count_requests(LOG, "GET", "/v2/other/"), 0);
    }

    #[test]
    fn config_without_auth_has_no_auth_section() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            config_yml(addr, Path::new("/r/data"), None),
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    \
             rootdirectory: /r/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n"
        );
    }

    #[test]
    fn config_with_auth_names_the_htpasswd_file() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let yml = config_yml(addr, Path::new("/r/data"), Some(Path::new("/r/htpasswd")));
        assert!(
            yml.ends_with(
                "addr: 127.0.0.1:5000\nauth:\n  htpasswd:\n    realm: oz-test\n    path: /r/htpasswd\n"
            ),
            "{yml}"
        );
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let creds = Credentials::new("alice", "s3cret");
        assert_eq!(
            format!("{creds:?}"),
            "Credentials { username: \"alice\", password: \"<redacted>\" }"
        );
    }

    /// Removes a local image tag when the test ends, pass or fail.
    struct ImageGuard(String);

    impl Drop for ImageGuard {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["image", "rm", "-f", &self.0])
                .output();
        }
    }

    fn pull(config: &Path, image: &str) -> std::process::Output {
        Command::new("docker")
            .arg("--config")
            .arg(config)
            .args(["pull", "-q", image])
            .output()
            .unwrap()
    }

    fn unique_repo(name: &str) -> String {
        format!("oz-standin-test/{name}:{}", std::process::id())
    }

    #[test]
    fn auth_registry_serves_logged_in_pulls_and_refuses_anonymous_ones() {
        let registry = Registry::start(RegistryOpts {
            auth: Some(Credentials::new("alice", "s3cret-pw")),
        });
        let repo_tag = unique_repo("auth");
        let image = registry.push("oz-test/musl:latest", &repo_tag).unwrap();
        let _guard = ImageGuard(image.clone());
        assert_eq!(image, format!("{}/{repo_tag}", registry.addr()));

        let config = fs::read_to_string(registry.docker_config().join("config.json")).unwrap();
        assert!(
            config.contains(&format!("\"{}\"", registry.addr())),
            "{config}"
        );

        let anonymous = TempDir::new("anon-docker-config").unwrap();
        let refused = pull(anonymous.path(), &image);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("no basic auth credentials"), "{stderr}");

        let pulled = pull(&registry.docker_config(), &image);
        assert!(
            pulled.status.success(),
            "{}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        let repo = repo_tag.split(':').next().unwrap();
        let manifests = format!("/v2/{repo}/manifests/");
        assert_eq!(registry.requests("PUT", &manifests), 1);
        assert!(registry.requests("HEAD", &manifests) + registry.requests("GET", &manifests) >= 1);
        assert!(!registry.log().contains("s3cret-pw"));
    }

    #[test]
    fn open_registry_serves_anyone_and_is_gone_after_drop() {
        let registry = Registry::start(RegistryOpts::default());
        assert!(registry.credentials().is_none());
        let image = registry
            .push("oz-test/musl:latest", &unique_repo("open"))
            .unwrap();
        let _guard = ImageGuard(image.clone());
        let anonymous = TempDir::new("anon-docker-config").unwrap();
        let pulled = pull(anonymous.path(), &image);
        assert!(
            pulled.status.success(),
            "{}",
            String::from_utf8_lossy(&pulled.stderr)
        );

        let addr = registry.addr();
        let dir = registry.dir.path().to_path_buf();
        drop(registry);
        assert!(!answers_v2(addr));
        assert!(!dir.exists());
    }
}
