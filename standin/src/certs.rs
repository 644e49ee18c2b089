//! A throwaway certificate authority and a server certificate it signed.
//!
//! Owns generating them with rcgen and building the rustls server config.
//! The CA's PEM is what a test points `SSL_CERT_FILE` at.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A host name the server certificate also covers; map it to the stand-in
/// with [`crate::ConnectProxy::alias`] to test proxied `wss://` dials (Go
/// never proxies loopback addresses, so `127.0.0.1` cannot be used there).
pub const TEST_HOST: &str = "orchestrator.test";

/// A test CA and a server configuration whose certificate it signed.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Server side TLS settings (certificate for localhost, 127.0.0.1, ::1, [`TEST_HOST`]).
    pub server_config: Arc<ServerConfig>,
}

impl TestCa {
    /// Generates a fresh CA and server certificate.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "oz-standin test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let names: Vec<String> = ["localhost", "127.0.0.1", "::1", TEST_HOST]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let leaf_key = KeyPair::generate().expect("generate server key");
        let mut leaf_params = CertificateParams::new(names).expect("server params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "oz-standin");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign server certificate");

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server certificate");
        Self {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    }
}
