//! A self-signed certificate made at start, like the one a UCM ships with, written out so that
//! tests can trust it as a CA instead of turning verification off.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub cert_pem: String,
}

/// Creates the certificate (SAN localhost and 127.0.0.1) and writes `ca.pem` into `dir`.
pub fn make(dir: &Path) -> anyhow::Result<(Tls, std::path::PathBuf)> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .context("generating the self-signed certificate")?;
    let cert_pem = ck.cert.pem();
    let path = dir.join("ca.pem");
    std::fs::write(&path, &cert_pem).with_context(|| format!("writing {}", path.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .context("TLS server configuration")?;
    // Stateless tickets and no session cache: any number of clients can resume, and a client
    // resumes only if it keeps its tickets. A cache (rustls keeps 256 sessions by default) is
    // too small for a fleet served by one simulator, whose clients would then pay a full
    // handshake on every reconnect, which a fleet of real UCMs, each caching its one client's
    // session, would not ask of them.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok((
        Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_pem,
        },
        path,
    ))
}
