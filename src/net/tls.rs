//! The rustls client configuration and its trust roots, for every TLS
//! connection the worker makes.
//!
//! Owns which certificate authorities the worker trusts towards Oz, the OTLP
//! collector and registries: the built-in Web PKI roots plus every PEM
//! certificate in `SSL_CERT_FILE` and in each file of `SSL_CERT_DIR`
//! (colon-separated, as Go reads it), so operators behind a
//! TLS-intercepting proxy can add their CA; and the one way a client
//! configuration is built (ring provider, safe default versions, optional
//! client certificate: the Docker daemon's roots and certificate come from
//! its own files). Does no network I/O; must not disable verification for
//! any reason.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where extra trust roots come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootSource {
    /// `SSL_CERT_FILE`: one PEM bundle.
    pub cert_file: Option<PathBuf>,
    /// `SSL_CERT_DIR`: directories whose every file may hold PEM certificates.
    pub cert_dirs: Vec<PathBuf>,
}

impl RootSource {
    /// Reads `SSL_CERT_FILE` and `SSL_CERT_DIR` through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        Self {
            cert_file: set("SSL_CERT_FILE").map(PathBuf::from),
            cert_dirs: set("SSL_CERT_DIR")
                .map(|v| {
                    v.split(':')
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A trust-root file that could not be used (the worker still starts, with
/// the roots it could read; these are logged as warnings).
#[derive(Debug)]
pub struct RootProblem {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong, in the system's or parser's words.
    pub problem: String,
}

impl fmt::Display for RootProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not load CA certificates from {}: {}",
            self.path.display(),
            self.problem
        )
    }
}

/// Why no TLS configuration could be built at all.
#[derive(Debug)]
pub struct TlsSetupError(pub rustls::Error);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not set up TLS: {}", self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// The roots: Web PKI plus the extra files, and what could not be read.
pub fn load_roots(source: &RootSource) -> (RootCertStore, usize, Vec<RootProblem>) {
    let mut store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut problems = Vec::new();
    let mut added = 0;
    let mut files: Vec<PathBuf> = source.cert_file.iter().cloned().collect();
    for dir in &source.cert_dirs {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(e) => problems.push(RootProblem {
                path: dir.clone(),
                problem: e.to_string(),
            }),
        }
    }
    for file in files {
        match add_pem_file(&mut store, &file) {
            Ok(n) => added += n,
            Err(problem) => problems.push(RootProblem {
                path: file,
                problem,
            }),
        }
    }
    (store, added, problems)
}

fn add_pem_file(store: &mut RootCertStore, path: &Path) -> Result<usize, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (added, _ignored) = store.add_parsable_certificates(certs);
    Ok(added)
}

/// A client configuration trusting `roots`, with the ring provider.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsSetupError> {
    client_config_with_auth(roots, None)
}

/// [`client_config`], presenting `client` (certificate chain and key) when
/// the server asks for one.
pub fn client_config_with_auth(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError)?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsSetupError)?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lookup_reads_file_and_dirs() {
        let env = |k: &str| match k {
            "SSL_CERT_FILE" => Some("/a.pem".to_string()),
            "SSL_CERT_DIR" => Some("/d1::/d2".to_string()),
            _ => None,
        };
        assert_eq!(
            RootSource::from_env(&env),
            RootSource {
                cert_file: Some("/a.pem".into()),
                cert_dirs: vec!["/d1".into(), "/d2".into()],
            }
        );
        assert_eq!(RootSource::from_env(&|_| None), RootSource::default());
    }

    #[test]
    fn unreadable_roots_are_reported_and_web_pki_kept() {
        let source = RootSource {
            cert_file: Some("/nonexistent/ca.pem".into()),
            cert_dirs: vec!["/nonexistent-dir".into()],
        };
        let (store, added, problems) = load_roots(&source);
        assert_eq!(added, 0);
        assert_eq!(store.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        let paths: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/nonexistent-dir"),
                PathBuf::from("/nonexistent/ca.pem")
            ]
        );
        assert!(client_config(store).is_ok());
    }
}
