//! Registry credentials, found the way the docker CLI finds them
//! (`shared/spec/TASK.md` §2, `shared/spec/ENGINE.md` "Credentials").
//!
//! Owns reading `DOCKER_AUTH_CONFIG` and the Docker client config file,
//! running `docker-credential-<name> get`, and encoding the result as the
//! `X-Registry-Auth` header. It must not talk to the daemon, and no secret it
//! handles may reach a log line, an error message or a `Debug` output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// Longest a credential helper may take before it is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials for one registry. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// A user name and password (or access token used as a password).
    Password {
        /// User name.
        username: String,
        /// Password.
        password: String,
        /// The credential key the entry was found under.
        server_address: String,
    },
    /// An OAuth identity (refresh) token.
    IdentityToken {
        /// The token.
        token: String,
        /// The credential key the entry was found under.
        server_address: String,
    },
}

impl RegistryAuth {
    /// The `X-Registry-Auth` header: padded base64url of the JSON the daemon expects.
    pub fn header_value(&self) -> String {
        let body = match self {
            Self::Password {
                username,
                password,
                server_address,
            } => {
                json!({"username": username, "password": password, "serveraddress": server_address})
            }
            Self::IdentityToken {
                token,
                server_address,
            } => json!({"identitytoken": token, "serveraddress": server_address}),
        };
        base64::encode_url(body.to_string().as_bytes())
    }

    /// The user name, safe to log; `None` for an identity token.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Password { username, .. } => Some(username),
            Self::IdentityToken { .. } => None,
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password {
                username,
                server_address,
                ..
            } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .field("server_address", server_address)
                .finish(),
            Self::IdentityToken { server_address, .. } => f
                .debug_struct("IdentityToken")
                .field("token", &"<redacted>")
                .field("server_address", server_address)
                .finish(),
        }
    }
}

/// The parts of the environment credential lookup reads; injected for tests.
#[derive(Clone)]
pub struct CredentialEnv {
    /// `$DOCKER_CONFIG`: the directory holding `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `$HOME`, for `~/.docker/config.json`.
    pub home: Option<PathBuf>,
    /// `$DOCKER_AUTH_CONFIG`: inline config JSON, consulted before the file. A secret.
    pub auth_config: Option<String>,
    /// `$PATH`, searched for `docker-credential-<name>`.
    pub path: Option<OsString>,
    /// Longest a helper may run.
    pub helper_timeout: Duration,
}

impl CredentialEnv {
    /// The worker's own environment.
    pub fn from_process() -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            docker_config: non_empty("DOCKER_CONFIG").map(PathBuf::from),
            home: non_empty("HOME").map(PathBuf::from),
            auth_config: std::env::var("DOCKER_AUTH_CONFIG")
                .ok()
                .filter(|v| !v.is_empty()),
            path: non_empty("PATH"),
            helper_timeout: HELPER_TIMEOUT,
        }
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn config_file(&self) -> Option<PathBuf> {
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => Some(dir.join("config.json")),
            (None, Some(home)) => Some(home.join(".docker").join("config.json")),
            (None, None) => None,
        }
    }
}

impl fmt::Debug for CredentialEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEnv")
            .field("docker_config", &self.docker_config)
            .field("home", &self.home)
            .field(
                "auth_config",
                &self.auth_config.as_ref().map(|_| "<redacted>"),
            )
            .field("path", &self.path)
            .field("helper_timeout", &self.helper_timeout)
            .finish()
    }
}

/// Why credentials could not be looked up. None of these carries a secret;
/// the Go worker logs them at warn and pulls anonymously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The config file exists but could not be read.
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The system's words.
        error: String,
    },
    /// The config (file or `DOCKER_AUTH_CONFIG`) is not the expected JSON.
    /// Only the position is kept: serde's message could quote a secret.
    ParseConfig {
        /// The file, or `$DOCKER_AUTH_CONFIG`.
        source: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    BadAuthField {
        /// The file, or `$DOCKER_AUTH_CONFIG`.
        source: String,
        /// The entry's key.
        key: String,
    },
    /// `docker-credential-<name>` is not an executable on `PATH`.
    HelperNotFound {
        /// The program name.
        program: String,
    },
    /// The helper could not be started or talked to.
    HelperIo {
        /// The program name.
        program: String,
        /// The system's words.
        error: String,
    },
    /// The helper ran longer than the limit and was killed.
    HelperTimeout {
        /// The program name.
        program: String,
        /// The limit.
        after: Duration,
    },
    /// The helper failed (other than "credentials not found").
    HelperFailed {
        /// The program name.
        program: String,
        /// Its exit code, `None` when a signal ended it.
        code: Option<i32>,
    },
    /// The helper succeeded but its answer is not the expected JSON.
    HelperAnswer {
        /// The program name.
        program: String,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadConfig { path, error } => {
                write!(f, "cannot read Docker config {}: {error}", path.display())
            }
            Self::ParseConfig {
                source,
                line,
                column,
            } => write!(
                f,
                "Docker config {source} is not valid: unexpected JSON at line {line} column {column}"
            ),
            Self::BadAuthField { source, key } => write!(
                f,
                "Docker config {source}: the \"auth\" of {key:?} is not base64 of user:password; run `docker login` again"
            ),
            Self::HelperNotFound { program } => write!(
                f,
                "credential helper {program} is not on PATH; install it or remove it from the Docker config"
            ),
            Self::HelperIo { program, error } => {
                write!(f, "cannot run credential helper {program}: {error}")
            }
            Self::HelperTimeout { program, after } => write!(
                f,
                "credential helper {program} did not answer within {}s and was stopped",
                after.as_secs_f64()
            ),
            Self::HelperFailed { program, code } => {
                match code {
                    Some(c) => write!(f, "credential helper {program} exited with status {c}")?,
                    None => write!(f, "credential helper {program} was killed by a signal")?,
                }
                // Its output is never quoted: a helper that half-works can
                // print the credential it failed to format.
                write!(
                    f,
                    " (its output is not shown, as it may hold a credential; run `{program} get` by hand to see it)"
                )
            }
            Self::HelperAnswer { program } => write!(
                f,
                "credential helper {program} answered with something other than {{\"ServerURL\",\"Username\",\"Secret\"}} JSON"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// The Docker client config, as far as credentials go.
#[derive(Debug, Default, Deserialize)]
struct ClientConfig {
    #[serde(default)]
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Credentials for the registry whose credential key is `key`
/// (see `ImageRef::credential_key`); `None` = pull anonymously.
///
/// `DOCKER_AUTH_CONFIG` is consulted first; when it has nothing for `key`,
/// the config file is. A missing file means no credentials.
pub fn lookup(key: &str, env: &CredentialEnv) -> Result<Option<RegistryAuth>, AuthError> {
    if let Some(inline) = env.auth_config.as_deref() {
        let source = "$DOCKER_AUTH_CONFIG";
        let config = parse_config(inline, source)?;
        if let Some(found) = resolve(&config, key, source, env)? {
            return Ok(Some(found));
        }
    }
    let Some(path) = env.config_file() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::ReadConfig {
                path,
                error: e.to_string(),
            });
        }
    };
    let source = path.display().to_string();
    let config = parse_config(&text, &source)?;
    resolve(&config, key, &source, env)
}

fn parse_config(text: &str, source: &str) -> Result<ClientConfig, AuthError> {
    if text.trim().is_empty() {
        return Ok(ClientConfig::default());
    }
    serde_json::from_str(text).map_err(|e| AuthError::ParseConfig {
        source: source.to_owned(),
        line: e.line(),
        column: e.column(),
    })
}

/// A helper when one is configured for `key`, else the `auths` entry.
fn resolve(
    config: &ClientConfig,
    key: &str,
    source: &str,
    env: &CredentialEnv,
) -> Result<Option<RegistryAuth>, AuthError> {
    let helper = config
        .cred_helpers
        .as_ref()
        .and_then(|h| h.get(key))
        .or(config.creds_store.as_ref())
        .filter(|name| !name.is_empty());
    if let Some(helper) = helper {
        return run_helper(helper, key, env);
    }
    let Some(auths) = config.auths.as_ref() else {
        return Ok(None);
    };
    let wanted = hostname(key);
    let entry = auths.get(key).map(|e| (key, e)).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| hostname(k) == wanted)
            .map(|(k, e)| (k.as_str(), e))
    });
    let Some((entry_key, entry)) = entry else {
        return Ok(None);
    };
    from_entry(entry, key).map_err(|()| AuthError::BadAuthField {
        source: source.to_owned(),
        key: entry_key.to_owned(),
    })
}

/// `https://host:port/v1/` → `host:port` (the CLI's `ConvertToHostname`).
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn from_entry(entry: &AuthEntry, key: &str) -> Result<Option<RegistryAuth>, ()> {
    let non_empty = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let server_address = key.to_owned();
    if let Some(token) = non_empty(&entry.identitytoken) {
        return Ok(Some(RegistryAuth::IdentityToken {
            token,
            server_address,
        }));
    }
    let (username, password) = match non_empty(&entry.auth) {
        Some(encoded) => {
            let bytes = base64::decode_standard(encoded.trim()).ok_or(())?;
            let text = String::from_utf8(bytes).map_err(|_| ())?;
            let (user, pass) = text.split_once(':').ok_or(())?;
            (user.to_owned(), pass.to_owned())
        }
        None => (
            non_empty(&entry.username).unwrap_or_default(),
            non_empty(&entry.password).unwrap_or_default(),
        ),
    };
    if username.is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth::Password {
        username,
        password,
        server_address,
    }))
}

mod base64;
mod helper;

use helper::run_helper;

#[cfg(test)]
mod tests;
