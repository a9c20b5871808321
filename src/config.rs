//! Configuration: the YAML file of the contract, the single-UCM command-line flags, and their
//! validation into [`Settings`], the one shape the rest of the exporter reads.
//!
//! Errors name the file and the key, because the operator reading them is usually editing that
//! file over SSH at the time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Contract default for what counts as a local extension number.
pub const DEFAULT_EXTENSION_PATTERN: &str = "^[0-9]{2,7}$";
pub const DEFAULT_EXTENSION_MAX: usize = 5000;
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ucm-exporter";
/// The UCM filters on call start while a record appears only at call end, so the query window
/// reaches back this far to catch the longest calls.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::from_secs(4 * 3600);
/// How often the whole `max_call_duration` window is re-read. Between sweeps, polls read only a
/// short overlap, so a poll costs in proportion to new records rather than to history.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(600);
/// Re-login before the UCM's ten-minute cookie lifetime runs out, so a poll rarely meets -6.
pub const DEFAULT_SESSION_RENEW: Duration = Duration::from_secs(540);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The YAML file as written by the operator. Unknown keys are rejected so a typo is an error,
/// not a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub extensions: Option<ExtensionsFile>,
    #[serde(default, with = "humantime_serde")]
    pub max_call_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub session_renew_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    #[serde(default)]
    pub targets: Vec<TargetFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsFile {
    pub pattern: Option<String>,
    pub max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub name: String,
    pub url: String,
    pub username: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password: Option<String>,
    pub timezone: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_call_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    #[serde(default)]
    pub tls: TlsFile,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub extension_pattern: String,
    pub extension_max: usize,
    pub targets: Vec<Target>,
}

/// One UCM to poll.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Base URL; requests go to `<url>/api`.
    pub url: String,
    pub username: String,
    pub password: Secret,
    pub timezone: chrono_tz::Tz,
    pub poll_interval: Duration,
    pub max_call_duration: Duration,
    pub sweep_interval: Duration,
    pub overlap: Duration,
    pub session_renew_after: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl Target {
    pub fn api_url(&self) -> String {
        format!("{}/api", self.url.trim_end_matches('/'))
    }
}

/// Single-UCM settings given on the command line instead of a file.
#[derive(Debug, Default, Clone)]
pub struct FlagTarget {
    pub name: String,
    pub url: String,
    pub username: String,
    pub password_file: Option<PathBuf>,
    pub password_env_value: Option<String>,
    pub timezone: Option<String>,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
}

/// Overrides from flags that apply whether or not a file is used.
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    pub poll_interval: Option<Duration>,
    pub state_dir: Option<PathBuf>,
}

/// Parses and validates a YAML config file. `source` names the file in every error.
pub fn parse_file(text: &str, source: &Path) -> Result<FileConfig> {
    if text.trim().is_empty() {
        bail!(
            "{}: the file is empty; it needs at least a `targets:` list",
            source.display()
        );
    }
    serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", source.display(), e))
}

pub fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_file(&text, path)
}

/// Builds [`Settings`] from an optional file, an optional flag-defined target and overrides.
/// `env` looks up environment variables so that tests need not mutate the process environment.
pub fn resolve(
    file: Option<(&FileConfig, &Path)>,
    flag_target: Option<&FlagTarget>,
    overrides: &FlagOverrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let empty = FileConfig::default();
    let (fc, src) = match file {
        Some((fc, p)) => (fc, p.display().to_string()),
        None => (&empty, "command line".to_string()),
    };
    let ext = fc.extensions.as_ref();
    let extension_pattern = ext
        .and_then(|e| e.pattern.clone())
        .unwrap_or_else(|| DEFAULT_EXTENSION_PATTERN.to_string());
    if let Err(e) = regex::Regex::new(&extension_pattern) {
        bail!("{src}: extensions.pattern is not a valid regular expression: {e}");
    }
    let extension_max = ext.and_then(|e| e.max).unwrap_or(DEFAULT_EXTENSION_MAX);
    if extension_max == 0 {
        bail!("{src}: extensions.max must be at least 1");
    }
    let poll_interval = overrides
        .poll_interval
        .or(fc.poll_interval)
        .unwrap_or(DEFAULT_POLL_INTERVAL);
    let state_dir = overrides
        .state_dir
        .clone()
        .or_else(|| fc.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let defaults = TargetDefaults {
        poll_interval,
        max_call_duration: fc.max_call_duration.unwrap_or(DEFAULT_MAX_CALL_DURATION),
        sweep_interval: fc.sweep_interval.unwrap_or(DEFAULT_SWEEP_INTERVAL),
        overlap: fc.overlap.unwrap_or(DEFAULT_OVERLAP),
        session_renew_after: fc.session_renew_after.unwrap_or(DEFAULT_SESSION_RENEW),
        request_timeout: fc.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
    };
    check_duration(
        &src,
        "poll_interval",
        defaults.poll_interval,
        Duration::from_secs(1),
    )?;
    check_duration(
        &src,
        "sweep_interval",
        defaults.sweep_interval,
        Duration::from_secs(1),
    )?;
    check_duration(
        &src,
        "max_call_duration",
        defaults.max_call_duration,
        Duration::from_secs(60),
    )?;
    check_duration(
        &src,
        "session_renew_after",
        defaults.session_renew_after,
        Duration::from_secs(10),
    )?;
    check_duration(
        &src,
        "request_timeout",
        defaults.request_timeout,
        Duration::from_millis(100),
    )?;

    let mut targets = Vec::new();
    for (i, t) in fc.targets.iter().enumerate() {
        targets.push(
            resolve_file_target(t, &defaults, env)
                .with_context(|| format!("{src}: targets[{i}] ({})", display_name(&t.name)))?,
        );
    }
    if let Some(ft) = flag_target {
        targets.push(resolve_flag_target(ft, &defaults)?);
    }
    let mut names = std::collections::HashSet::new();
    for t in &targets {
        if !names.insert(t.name.clone()) {
            bail!(
                "{src}: target name {:?} is used twice; names must be unique",
                t.name
            );
        }
    }
    Ok(Settings {
        state_dir,
        extension_pattern,
        extension_max,
        targets,
    })
}

struct TargetDefaults {
    poll_interval: Duration,
    max_call_duration: Duration,
    sweep_interval: Duration,
    overlap: Duration,
    session_renew_after: Duration,
    request_timeout: Duration,
}

fn display_name(n: &str) -> &str {
    if n.is_empty() {
        "unnamed"
    } else {
        n
    }
}

fn check_duration(src: &str, key: &str, d: Duration, min: Duration) -> Result<()> {
    if d < min {
        bail!(
            "{src}: {key} is {}, less than the minimum {}",
            humantime::format_duration(d),
            humantime::format_duration(min)
        );
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("name {name:?} must be non-empty and use only letters, digits, '_' and '-' (it names the state file and /probe?target=)");
    }
    Ok(())
}

fn check_url(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("url {url:?} is not a valid URL (expected https://host:8089)"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => tracing::warn!(
            url,
            "the UCM API is HTTPS-only on real devices; plain http is meant for simulators"
        ),
        other => bail!("url {url:?} has scheme {other:?}; use https://host:8089"),
    }
    if parsed.host_str().is_none() {
        bail!("url {url:?} has no host");
    }
    if parsed.path().trim_end_matches('/').ends_with("/api") {
        tracing::warn!(url, "url ends in /api; the exporter appends /api itself");
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_timezone(tz: Option<&str>) -> Result<chrono_tz::Tz> {
    match tz {
        Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
            anyhow::anyhow!("timezone {name:?} is not an IANA zone name (like Europe/Berlin)")
        }),
        None => Ok(local_timezone()),
    }
}

/// The exporter host's zone, from `TZ` or `/etc/timezone`/`/etc/localtime`, falling back to UTC.
/// Only Unix timestamps of CDR times depend on it, never which calls are counted.
pub fn local_timezone() -> chrono_tz::Tz {
    if let Ok(tz) = std::env::var("TZ") {
        if let Ok(z) = tz.trim_start_matches(':').parse() {
            return z;
        }
    }
    if let Ok(s) = std::fs::read_to_string("/etc/timezone") {
        if let Ok(z) = s.trim().parse() {
            return z;
        }
    }
    if let Ok(p) = std::fs::read_link("/etc/localtime") {
        let s = p.to_string_lossy();
        if let Some(idx) = s.find("zoneinfo/") {
            if let Ok(z) = s[idx + "zoneinfo/".len()..].parse() {
                return z;
            }
        }
    }
    chrono_tz::UTC
}

fn read_password_file(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password_file {}", path.display()))?;
    let pw = text.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        bail!("password_file {} is empty", path.display());
    }
    Ok(Secret::new(pw))
}

fn resolve_file_target(
    t: &TargetFile,
    d: &TargetDefaults,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target> {
    check_name(&t.name)?;
    let url = check_url(&t.url)?;
    if t.username.is_empty() {
        bail!("username is empty; use the API user of *HTTPS API Settings (New)*");
    }
    let sources = [
        t.password_file.is_some(),
        t.password_env.is_some(),
        t.password.is_some(),
    ];
    let password = match sources.iter().filter(|s| **s).count() {
        0 => bail!("no password: set password_file (recommended) or password_env"),
        1 => {
            if let Some(p) = &t.password_file {
                read_password_file(p)?
            } else if let Some(var) = &t.password_env {
                match env(var) {
                    Some(v) if !v.is_empty() => Secret::new(v),
                    _ => bail!("password_env names {var}, which is not set or empty"),
                }
            } else {
                tracing::warn!(
                    target_name = %t.name,
                    "password is written in the config file; prefer password_file or password_env"
                );
                Secret::new(t.password.clone().unwrap_or_default())
            }
        }
        _ => bail!("set only one of password_file, password_env and password"),
    };
    if let Some(ca) = &t.tls.ca_file {
        if !ca.is_file() {
            bail!("tls.ca_file {} does not exist", ca.display());
        }
    }
    let poll_interval = t.poll_interval.unwrap_or(d.poll_interval);
    check_duration(
        &t.name,
        "poll_interval",
        poll_interval,
        Duration::from_secs(1),
    )?;
    Ok(Target {
        name: t.name.clone(),
        url,
        username: t.username.clone(),
        password,
        timezone: parse_timezone(t.timezone.as_deref())?,
        poll_interval,
        max_call_duration: t.max_call_duration.unwrap_or(d.max_call_duration),
        sweep_interval: d.sweep_interval,
        overlap: d.overlap,
        session_renew_after: d.session_renew_after,
        request_timeout: t.request_timeout.unwrap_or(d.request_timeout),
        ca_file: t.tls.ca_file.clone(),
        insecure_skip_verify: t.tls.insecure_skip_verify,
    })
}

fn resolve_flag_target(ft: &FlagTarget, d: &TargetDefaults) -> Result<Target> {
    let name = if ft.name.is_empty() {
        "ucm".to_string()
    } else {
        ft.name.clone()
    };
    check_name(&name).context("--ucm.name")?;
    let url = check_url(&ft.url).context("--ucm.url")?;
    if ft.username.is_empty() {
        bail!("--ucm.username is required with --ucm.url");
    }
    let password = match (&ft.password_file, &ft.password_env_value) {
        (Some(p), _) => read_password_file(p).context("--ucm.password-file")?,
        (None, Some(v)) if !v.is_empty() => Secret::new(v.clone()),
        _ => bail!("--ucm.url needs a password: --ucm.password-file PATH or the UCM_PASSWORD environment variable"),
    };
    if let Some(ca) = &ft.ca_file {
        if !ca.is_file() {
            bail!("--ucm.ca-file {} does not exist", ca.display());
        }
    }
    Ok(Target {
        name,
        url,
        username: ft.username.clone(),
        password,
        timezone: parse_timezone(ft.timezone.as_deref()).context("--ucm.timezone")?,
        poll_interval: d.poll_interval,
        max_call_duration: d.max_call_duration,
        sweep_interval: d.sweep_interval,
        overlap: d.overlap,
        session_renew_after: d.session_renew_after,
        request_timeout: d.request_timeout,
        ca_file: ft.ca_file.clone(),
        insecure_skip_verify: ft.insecure_skip_verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve_text(text: &str) -> Result<Settings> {
        let p = Path::new("test.yml");
        let fc = parse_file(text, p)?;
        resolve(Some((&fc, p)), None, &FlagOverrides::default(), &|k| {
            (k == "OFFICE_PW").then(|| "pw-from-env".to_string())
        })
    }

    #[test]
    fn full_example_resolves() {
        let s = resolve_text(
            "poll_interval: 45s\nstate_dir: /tmp/x\nextensions:\n  pattern: '^[0-9]{3}$'\n  max: 10\n\
             targets:\n  - name: office\n    url: https://ucm.example.com:8089/\n    username: cdrapi\n    \
             password_env: OFFICE_PW\n    timezone: Europe/Berlin\n    poll_interval: 30s\n",
        )
        .unwrap();
        assert_eq!(s.extension_max, 10);
        assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
        let t = &s.targets[0];
        assert_eq!(t.api_url(), "https://ucm.example.com:8089/api");
        assert_eq!(t.password.expose(), "pw-from-env");
        assert_eq!(t.poll_interval, Duration::from_secs(30));
        assert_eq!(t.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(format!("{:?}", t.password), "Secret(***)");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let err = resolve_text(
            "targets:\n  - name: a\n    url: https://h\n    username: u\n    pasword_file: /x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.yml"), "{err}");
        assert!(err.contains("pasword_file"), "{err}");
    }

    #[test]
    fn validation_errors_say_what_to_fix() {
        let cases = [
            ("targets:\n  - name: 'a b'\n    url: https://h\n    username: u\n    password_env: OFFICE_PW\n", "letters, digits"),
            ("targets:\n  - name: a\n    url: ftp://h\n    username: u\n    password_env: OFFICE_PW\n", "scheme"),
            ("targets:\n  - name: a\n    url: https://h\n    username: u\n", "no password"),
            ("targets:\n  - name: a\n    url: https://h\n    username: u\n    password_env: NOPE\n", "NOPE"),
            ("targets:\n  - name: a\n    url: https://h\n    username: u\n    password_env: OFFICE_PW\n    timezone: Mars/Base\n", "IANA"),
            ("poll_interval: 5x\n", "poll_interval"),
            ("extensions:\n  pattern: '('\n", "extensions.pattern"),
            ("targets:\n  - {name: a, url: 'https://h', username: u, password_env: OFFICE_PW}\n  - {name: a, url: 'https://h', username: u, password_env: OFFICE_PW}\n", "used twice"),
            ("", "empty"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", resolve_text(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn flag_target_needs_a_password() {
        let ft = FlagTarget {
            url: "https://127.0.0.1:8089".into(),
            username: "cdrapi".into(),
            ..Default::default()
        };
        let err = resolve(None, Some(&ft), &FlagOverrides::default(), &no_env).unwrap_err();
        assert!(err.to_string().contains("UCM_PASSWORD"), "{err}");
        let ft = FlagTarget {
            password_env_value: Some("pw".into()),
            ..ft
        };
        let s = resolve(None, Some(&ft), &FlagOverrides::default(), &no_env).unwrap();
        assert_eq!(s.targets[0].name, "ucm");
    }
}
