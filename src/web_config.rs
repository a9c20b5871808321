//! `--web.config.file`: TLS and basic authentication for the exporter's own HTTP side, in the
//! file format of the Prometheus exporter-toolkit, so one file (and `promtool check web-config`)
//! serves this exporter like every other.
//!
//! The file and the certificate, key and CA files it names are looked at again (one `stat` each)
//! for every new connection and every request, and read again when any of them changed: a
//! certificate renewed by certbot or cert-manager is served from the next handshake on, and a
//! changed user list applies to the next request, without a restart. A file that became invalid
//! is refused with one error in the log and the last good configuration stays in force, so a
//! half-written renewal never takes the endpoint down or silently drops its protection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use serde::Deserialize;

/// The file as written. Unknown keys are an error, as in the toolkit (`UnmarshalStrict`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateLimitFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted for compatibility; the exporter serves HTTP/1.1 only, which every scraper speaks.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    burst: Option<u32>,
}

/// The only response headers the toolkit lets a file set, with their allowed values (empty: any).
/// Kept to the same list so that a file valid here is valid for `promtool check web-config`.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// One valid configuration, ready to use.
pub struct WebConfig {
    /// Present when the file configures TLS: every connection is then TLS.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name → bcrypt hash. Empty: no authentication.
    users: HashMap<String, String>,
    /// Extra response headers (HSTS and the like).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<(Duration, u32)>,
}

impl WebConfig {
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// Identity of the files a configuration was read from: when none of these changed, the
/// configuration in memory is still the one on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

fn stamp(paths: &[PathBuf]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                #[cfg(unix)]
                let ino = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let ino = 0;
                Some((m.modified().ok()?, m.len(), ino))
            })
            .collect(),
    )
}

struct Current {
    config: Arc<WebConfig>,
    /// The config file and every file it names, as of the last successful read.
    files: Vec<PathBuf>,
    stamp: Stamp,
    /// The stamp of the last attempt that failed, so a broken file is logged once, not per request.
    failed: Option<Stamp>,
    bucket: Option<Bucket>,
}

/// Token bucket of `rate_limit`: one token per interval, up to `burst`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The exporter's web security: the current configuration and what checking passwords needs.
pub struct WebSecurity {
    path: PathBuf,
    current: Mutex<Current>,
    /// bcrypt verdicts by a keyed hash of (user, stored hash, password): bcrypt is slow on
    /// purpose, and Prometheus sends the same credentials every scrape.
    verdicts: Mutex<HashMap<u128, bool>>,
    seed: u64,
    /// One bcrypt check at a time: a flood of wrong passwords then costs one core at most, and
    /// the pollers and scrapes keep the other.
    bcrypt_gate: tokio::sync::Semaphore,
}

const MAX_CACHED_VERDICTS: usize = 1024;

impl WebSecurity {
    /// Reads and checks the file; any problem is an error that names the file and the key.
    pub fn load(path: &Path) -> Result<Arc<WebSecurity>> {
        let (config, files) =
            read(path).with_context(|| format!("invalid --web.config.file {}", path.display()))?;
        tracing::info!(
            file = %path.display(),
            tls = config.tls.is_some(),
            basic_auth = config.requires_auth(),
            "web config loaded"
        );
        let stamp = stamp(&files);
        let bucket = config.rate_limit.map(|(_, burst)| Bucket {
            tokens: burst as f64,
            at: Instant::now(),
        });
        Ok(Arc::new(WebSecurity {
            path: path.to_path_buf(),
            current: Mutex::new(Current {
                config: Arc::new(config),
                files,
                stamp,
                failed: None,
                bucket,
            }),
            verdicts: Mutex::new(HashMap::new()),
            seed: rand::random(),
            bcrypt_gate: tokio::sync::Semaphore::new(1),
        }))
    }

    /// The configuration in force, read again first when any of its files changed.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut cur = self.current.lock().expect("web config lock");
        let now = stamp(&cur.files);
        if now == cur.stamp || cur.failed.as_ref() == Some(&now) {
            return cur.config.clone();
        }
        match read(&self.path) {
            Ok((config, _)) if config.tls.is_some() != cur.config.tls.is_some() => {
                cur.failed = Some(now);
                tracing::error!(
                    file = %self.path.display(),
                    "web config changed whether TLS is on: that needs a restart; keeping the previous configuration"
                );
            }
            Ok((config, files)) => {
                // Stamp the files the new config names (they may differ from the old ones).
                cur.stamp = stamp(&files);
                cur.files = files;
                cur.failed = None;
                if config.rate_limit != cur.config.rate_limit {
                    cur.bucket = config.rate_limit.map(|(_, burst)| Bucket {
                        tokens: burst as f64,
                        at: Instant::now(),
                    });
                }
                cur.config = Arc::new(config);
                self.verdicts.lock().expect("verdict lock").clear();
                tracing::info!(file = %self.path.display(), "web config reloaded");
            }
            Err(e) => {
                cur.failed = Some(now);
                tracing::error!(
                    file = %self.path.display(),
                    error = %format!("{e:#}"),
                    "web config is invalid; keeping the previous configuration"
                );
            }
        }
        cur.config.clone()
    }

    /// Takes one token of `rate_limit`; false when the request is over the limit.
    pub fn admit(&self) -> bool {
        let mut cur = self.current.lock().expect("web config lock");
        let Some((interval, burst)) = cur.config.rate_limit else {
            return true;
        };
        let Some(b) = cur.bucket.as_mut() else {
            return true;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() / interval.as_secs_f64();
        b.tokens = (b.tokens + refill).min(burst as f64);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when `config` needs no authentication or the `Authorization` header carries the
    /// right user and password.
    pub async fn authorize(&self, config: &WebConfig, authorization: Option<&HeaderValue>) -> bool {
        if config.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let known = config.users.get(&user);
        // An unknown user is checked against a hash of the same cost, so response times do not
        // tell which user names exist.
        let hash = known.cloned().unwrap_or_else(|| decoy_hash().to_string());
        let key = {
            let mut buf = Vec::with_capacity(user.len() + hash.len() + password.len() + 2);
            buf.extend_from_slice(user.as_bytes());
            buf.push(0);
            buf.extend_from_slice(hash.as_bytes());
            buf.push(0);
            buf.extend_from_slice(password.as_bytes());
            xxhash_rust::xxh3::xxh3_128_with_seed(&buf, self.seed)
        };
        if let Some(v) = self.verdicts.lock().expect("verdict lock").get(&key) {
            return *v && known.is_some();
        }
        let ok = {
            let _permit = self.bcrypt_gate.acquire().await.expect("gate never closed");
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        let mut verdicts = self.verdicts.lock().expect("verdict lock");
        if verdicts.len() >= MAX_CACHED_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, ok);
        ok && known.is_some()
    }
}

fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        bcrypt::hash(rand::random::<u64>().to_string(), bcrypt::DEFAULT_COST)
            .expect("bcrypt hashing a fixed-size input cannot fail")
    })
}

fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Reads and validates the file; returns the configuration and the files it depends on.
fn read(path: &Path) -> Result<(WebConfig, Vec<PathBuf>)> {
    let text = std::fs::read_to_string(path).context("cannot read the file")?;
    let file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_yaml::from_str(&text).context("not a valid web configuration")?
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];

    let mut users = HashMap::new();
    for (user, hash) in file.basic_auth_users.unwrap_or_default() {
        hash.parse::<bcrypt::HashParts>().map_err(|e| {
            anyhow!("basic_auth_users.{user}: not a bcrypt hash ({e}); create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
        })?;
        users.insert(user, hash);
    }

    let mut headers = Vec::new();
    if let Some(h) = file
        .http_server_config
        .as_ref()
        .and_then(|h| h.headers.as_ref())
    {
        for (name, value) in h {
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
                bail!("http_server_config.headers: header {name:?} cannot be configured");
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                bail!(
                    "http_server_config.headers.{name}: expected one of {allowed:?}, got {value:?}"
                );
            }
            headers.push((
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("http_server_config.headers.{name}: invalid value"))?,
            ));
        }
    }

    let rate_limit = match file.rate_limit {
        Some(RateLimitFile {
            interval: Some(i),
            burst,
        }) if !i.is_zero() => {
            let burst = burst.unwrap_or(0);
            if burst == 0 {
                bail!("rate_limit.burst must be at least 1 when rate_limit.interval is set");
            }
            Some((i, burst))
        }
        _ => None,
    };

    let tls = match file.tls_server_config {
        Some(t) if tls_enabled(&t) => Some(Arc::new(tls_config(&t, dir, &mut files)?)),
        _ => None,
    };
    Ok((
        WebConfig {
            tls,
            users,
            headers,
            rate_limit,
        },
        files,
    ))
}

/// As in the toolkit: any TLS setting turns TLS on, and then a certificate and key are required.
fn tls_enabled(t: &TlsFile) -> bool {
    t.cert.is_some()
        || t.key.is_some()
        || t.cert_file.is_some()
        || t.key_file.is_some()
        || t.client_ca_file.is_some()
        || t.client_ca.is_some()
        || t.client_auth_type.as_deref().is_some_and(|s| !s.is_empty())
}

fn read_named(dir: &Path, key: &str, p: &Path, files: &mut Vec<PathBuf>) -> Result<Vec<u8>> {
    let full = dir.join(p);
    let data = std::fs::read(&full)
        .with_context(|| format!("tls_server_config.{key} {}", full.display()))?;
    files.push(full);
    Ok(data)
}

fn tls_config(t: &TlsFile, dir: &Path, files: &mut Vec<PathBuf>) -> Result<ServerConfig> {
    if t.client_allowed_sans.is_some() {
        bail!("tls_server_config.client_allowed_sans is not supported by ucm-exporter; use a client CA of its own for the scrapers instead");
    }
    let cert_pem = match (&t.cert, &t.cert_file) {
        (Some(_), Some(_)) => bail!("tls_server_config: set cert or cert_file, not both"),
        (Some(c), None) => c.as_bytes().to_vec(),
        (None, Some(p)) => read_named(dir, "cert_file", p, files)?,
        (None, None) => bail!("tls_server_config: missing one of cert or cert_file"),
    };
    let key_pem = match (&t.key, &t.key_file) {
        (Some(_), Some(_)) => bail!("tls_server_config: set key or key_file, not both"),
        (Some(k), None) => k.as_bytes().to_vec(),
        (None, Some(p)) => read_named(dir, "key_file", p, files)?,
        (None, None) => bail!("tls_server_config: missing one of key or key_file"),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("tls_server_config.cert_file: unreadable PEM: {e}"))?;
    if certs.is_empty() {
        bail!("tls_server_config.cert_file: no PEM certificate in it");
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("tls_server_config.key_file: no usable PEM private key: {e}"))?;

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        // As in Go, the list chooses among the TLS 1.2 suites; TLS 1.3 suites are always on.
        for n in names {
            if !provider
                .cipher_suites
                .iter()
                .any(|s| s.suite().as_str() == Some(n.as_str()))
            {
                let known: Vec<&str> = provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.version() == &rustls::version::TLS12)
                    .filter_map(|s| s.suite().as_str())
                    .collect();
                bail!(
                    "tls_server_config.cipher_suites: {n} is not supported (supported: {})",
                    known.join(", ")
                );
            }
        }
        provider.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || names.iter().any(|n| s.suite().as_str() == Some(n.as_str()))
        });
    }
    if let Some(curves) = &t.curve_preferences {
        let mut groups = Vec::new();
        for c in curves {
            let want = match c.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                "CurveP521" => bail!("tls_server_config.curve_preferences: CurveP521 is not supported; use X25519, CurveP256 or CurveP384"),
                other => bail!("tls_server_config.curve_preferences: unknown curve {other:?}"),
            };
            if let Some(g) = provider.kx_groups.iter().find(|g| g.name() == want) {
                groups.push(*g);
            }
        }
        provider.kx_groups = groups;
    }

    let version = |key: &str, v: &Option<String>, default: u8| -> Result<u8> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some("TLS10") => Ok(10),
            Some("TLS11") => Ok(11),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other) => bail!("tls_server_config.{key}: unknown TLS version {other:?} (TLS10, TLS11, TLS12 or TLS13)"),
        }
    };
    let min = version("min_version", &t.min_version, 12)?;
    let max = version("max_version", &t.max_version, 13)?;
    if max < 12 {
        bail!(
            "tls_server_config.max_version: TLS 1.0 and 1.1 are not supported; the oldest is TLS12"
        );
    }
    if min > max {
        bail!("tls_server_config: min_version is above max_version");
    }
    // TLS 1.0 and 1.1 are not implemented: a lower min_version means TLS 1.2, the safe reading.
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| *v >= min.max(12) && *v <= max)
            .map(|(_, p)| p)
            .collect();

    let mut roots = RootCertStore::empty();
    let ca_pem = match (&t.client_ca, &t.client_ca_file) {
        (Some(_), Some(_)) => bail!("tls_server_config: set client_ca or client_ca_file, not both"),
        (Some(c), None) => Some(c.as_bytes().to_vec()),
        (None, Some(p)) => Some(read_named(dir, "client_ca_file", p, files)?),
        (None, None) => None,
    };
    if let Some(pem) = &ca_pem {
        for c in CertificateDer::pem_slice_iter(pem) {
            let c =
                c.map_err(|e| anyhow!("tls_server_config.client_ca_file: unreadable PEM: {e}"))?;
            roots
                .add(c)
                .map_err(|e| anyhow!("tls_server_config.client_ca_file: {e}"))?;
        }
        if roots.is_empty() {
            bail!("tls_server_config.client_ca_file: no PEM certificate in it");
        }
    }
    let provider = Arc::new(provider);
    let auth = t.client_auth_type.as_deref().unwrap_or("");
    let needs_ca = || -> Result<()> {
        if roots.is_empty() {
            bail!("tls_server_config.client_auth_type {auth} needs client_ca_file");
        }
        Ok(())
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("tls_server_config: no usable TLS version and cipher suite")?;
    let builder = match auth {
        "" | "NoClientCert" => {
            if ca_pem.is_some() {
                bail!("tls_server_config: client CAs are configured without a client_auth_type");
            }
            builder.with_no_client_auth()
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                mandatory: auth != "RequestClientCert",
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            needs_ca()?;
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let v = if auth == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| anyhow!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
        other => bail!("tls_server_config.client_auth_type: invalid value {other:?} (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("tls_server_config: certificate and key do not fit together: {e}"))?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// `RequestClientCert` / `RequireAnyClientCert`: the client's certificate is asked for (and
/// with the latter required) but not checked against any CA, exactly as the toolkit's Go modes;
/// the handshake signature is still verified, so the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                "basic_auth_users:\n  alice: plain\n",
                "basic_auth_users.alice",
            ),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
                "cert_file",
            ),
            (
                "tls_server_config:\n  key_file: x.key\n",
                "missing one of cert",
            ),
            ("bogus: 1\n", "bogus"),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: me\n",
                "X-Powered-By",
            ),
        ];
        for (text, want) in cases {
            let p = write(d.path(), "web.yml", text);
            let err = format!("{:#}", WebSecurity::load(&p).err().expect(text));
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("--web.config.file"), "{err}");
        }
        let p = write(d.path(), "empty.yml", "");
        let s = WebSecurity::load(&p).unwrap();
        assert!(s.current().tls.is_none() && !s.current().requires_auth());
    }

    #[test]
    fn basic_header_parsing() {
        let v = HeaderValue::from_static("Basic YWxpY2U6czNjcjN0Ok9L");
        assert_eq!(parse_basic(&v), Some(("alice".into(), "s3cr3t:OK".into())));
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer x")), None);
    }
}
