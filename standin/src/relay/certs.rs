//! A throwaway mutual-TLS PKI for [`super::TlsRelay`], made with the
//! `openssl` CLI: a CA, a server certificate for 127.0.0.1/localhost, a client
//! certificate, and a client certificate from a second, untrusted CA.
//!
//! Writes only under the directory it is given.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::process::{FixtureError, io_err, run};

/// OpenSSL config for the throwaway PKI: one section of extensions per role.
const OPENSSL_CNF: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = oz-test\n\
[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier = hash\n\
[server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
[client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";

/// Writes `server/{cert,key}.pem`, `client/{ca,cert,key}.pem` and
/// `untrusted/{ca,cert,key}.pem` (the real CA, but a client certificate from
/// another CA) under `dir`, with the `openssl` CLI. P-256 keys: fast to make,
/// and accepted by stunnel, Go's crypto/tls and rustls alike.
pub(super) fn mint_certs(dir: &Path) -> Result<(), FixtureError> {
    let cnf = dir.join("openssl.cnf");
    fs::write(&cnf, OPENSSL_CNF).map_err(io_err(format!("writing {}", cnf.display())))?;
    for sub in ["pki", "server", "client", "untrusted"] {
        let d = dir.join(sub);
        fs::create_dir(&d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    let pki = dir.join("pki");
    make_ca(&cnf, &pki, "ca", "oz-test-ca")?;
    make_ca(&cnf, &pki, "other-ca", "oz-test-other-ca")?;
    let leaves = [
        (("ca", "server", "localhost"), "server"),
        (("ca", "client", "oz-test-client"), "client"),
        (("other-ca", "client", "oz-test-stranger"), "untrusted"),
    ];
    for (leaf, sub) in leaves {
        make_leaf(&cnf, &pki, leaf, &dir.join(sub))?;
    }
    for sub in ["client", "untrusted"] {
        let to = dir.join(sub).join("ca.pem");
        fs::copy(pki.join("ca.pem"), &to).map_err(io_err(format!("writing {}", to.display())))?;
    }
    Ok(())
}

fn openssl(args: &[&str]) -> Result<(), FixtureError> {
    run(
        Command::new("openssl").args(args),
        &format!("openssl {}", args.join(" ")),
        None,
    )
    .map(drop)
}

/// Paths as argv text; the temp dirs these name are plain ASCII.
fn arg(p: &Path) -> String {
    p.display().to_string()
}

fn make_ca(cnf: &Path, pki: &Path, name: &str, cn: &str) -> Result<(), FixtureError> {
    let (cnf, subj) = (arg(cnf), format!("/CN={cn}"));
    let key = arg(&pki.join(format!("{name}-key.pem")));
    let cert = arg(&pki.join(format!("{name}.pem")));
    openssl(&[
        "req",
        "-x509",
        "-config",
        &cnf,
        "-extensions",
        "ca",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "2",
        "-subj",
        &subj,
    ])
}

fn make_leaf(
    cnf: &Path,
    pki: &Path,
    (ca, role, cn): (&str, &str, &str),
    out: &Path,
) -> Result<(), FixtureError> {
    let (cnf, subj) = (arg(cnf), format!("/CN={cn}"));
    let csr = arg(&pki.join(format!("{cn}.csr")));
    let serial = arg(&pki.join(format!("{ca}.srl")));
    let (key, cert) = (arg(&out.join("key.pem")), arg(&out.join("cert.pem")));
    let ca_cert = arg(&pki.join(format!("{ca}.pem")));
    let ca_key = arg(&pki.join(format!("{ca}-key.pem")));
    openssl(&[
        "req",
        "-new",
        "-config",
        &cnf,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &subj,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_cert,
        "-CAkey",
        &ca_key,
        "-CAserial",
        &serial,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &cnf,
        "-extensions",
        role,
        "-out",
        &cert,
    ])
}
