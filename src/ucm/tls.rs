//! TLS trust of the UCM clients: one certificate verifier per trust setting, shared by every
//! target that has it, and a configuration of each target's own.
//!
//! Left to itself, each HTTP client builds its own configuration: a session cache sized for
//! 256 servers and, without a CA file, its own copy of the system's root certificates. A target
//! talks to one server, and a fleet of a thousand targets paid about 30 MiB for those caches
//! alone. The session cache stays per target, so that one UCM's tickets never crowd out
//! another's and every reconnect can resume (`tests/tls.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Target;

/// Servers whose sessions a target's configuration remembers: its UCM, and room for the URL a
/// reload may give it.
const SESSIONS: usize = 4;

/// What a target trusts.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Trust {
    /// The system's roots.
    System,
    /// Only the certificates of a CA file, by its contents.
    Pinned(Vec<u8>),
    /// Anything (`insecure_skip_verify`).
    Anything,
}

/// Verifiers in use, by trust; weak, so that a reload that drops the last target of a CA file
/// frees its verifier.
static VERIFIERS: Mutex<Option<HashMap<Trust, Weak<dyn ServerCertVerifier>>>> = Mutex::new(None);

/// The TLS configuration of one target's clients.
pub(crate) fn client_config(target: &Target) -> anyhow::Result<ClientConfig> {
    let trust = if target.insecure_skip_verify {
        Trust::Anything
    } else if let Some(ca) = &target.ca_file {
        Trust::Pinned(read_ca(ca)?)
    } else {
        Trust::System
    };
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier(&trust, &provider)?)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(SESSIONS);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Installs the ring provider as rustls's process default. Both the UCM client (through
/// reqwest's provider-less rustls) and the exporter's own TLS need one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// A CA file's bytes, refused with the reason when it holds no PEM certificate.
fn read_ca(ca: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(ca)
        .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", ca.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("CA file {} is not PEM: {e}", ca.display()))?;
    if certs.is_empty() {
        anyhow::bail!("CA file {} holds no certificate", ca.display());
    }
    Ok(pem)
}

/// The verifier for `trust`: the one in use if there is one, else a new one.
fn verifier(
    trust: &Trust,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ServerCertVerifier>> {
    let mut verifiers = VERIFIERS.lock().expect("not poisoned");
    let verifiers = verifiers.get_or_insert_with(HashMap::new);
    if let Some(v) = verifiers.get(trust).and_then(Weak::upgrade) {
        return Ok(v);
    }
    let v: Arc<dyn ServerCertVerifier> = match trust {
        Trust::System => Arc::new(rustls_platform_verifier::Verifier::new(provider.clone())?),
        Trust::Pinned(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert?)?;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?
        }
        Trust::Anything => Arc::new(AcceptAnything(provider.clone())),
    };
    verifiers.retain(|_, v| v.strong_count() > 0);
    verifiers.insert(trust.clone(), Arc::downgrade(&v));
    Ok(v)
}

/// `insecure_skip_verify`: any certificate, signatures still checked as the handshake needs.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_one_trust_share_a_verifier_and_not_a_session_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["ucm.example".into()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let mut t = Target::new(
            "a",
            "https://ucm.example:8089",
            "u",
            crate::config::Secret::new("p"),
        );
        t.ca_file = Some(ca.clone());
        client_config(&t).unwrap();
        let p = provider();
        let pinned = Trust::Pinned(read_ca(&ca).unwrap());
        let a = verifier(&pinned, &p).unwrap();
        assert!(Arc::ptr_eq(&a, &verifier(&pinned, &p).unwrap()));
        assert!(!Arc::ptr_eq(&a, &verifier(&Trust::Anything, &p).unwrap()));
        // Held weakly: once no target holds it, it is freed.
        assert_eq!(Arc::strong_count(&a), 1);
        // Garbage and an empty file are refused with the file's name.
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let e = client_config(&t).unwrap_err().to_string();
        assert!(e.contains("ca.pem"), "{e}");
        std::fs::write(&ca, "").unwrap();
        let e = client_config(&t).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
