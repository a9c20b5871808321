//! Configuration: the YAML file (README, Configuration), the single-UCM command-line flags, and their
//! validation into [`Settings`], the one shape the rest of the exporter reads.
//!
//! Errors name the file and the key, because the operator reading them is usually editing that
//! file over SSH at the time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cdr::ExtensionPattern;
use std::collections::BTreeSet;

/// `groups.service_level_seconds` when not set: the thresholds call-centre reports use.
pub const DEFAULT_SERVICE_LEVELS: [u64; 4] = [10, 20, 30, 60];
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
/// How long after its call ends a CDR may still appear: how far an end window reaches back past
/// the newest end read, and channel windows past a snapshot. Asterisk writes a CDR when the
/// call hangs up; each second of margin costs a re-read of the calls that ended in it, so at the
/// default poll interval a call is read about 1.33 times (docs/design.md §2.4).
pub const DEFAULT_END_MARGIN: Duration = Duration::from_secs(20);
/// How often the fast window modes are checked by a full sweep: a fast path that loses calls
/// shows up in `ucm_cdr_late_records_total` within this long.
pub const DEFAULT_SAFETY_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Re-login before the UCM's ten-minute cookie lifetime runs out, so a poll rarely meets -6.
pub const DEFAULT_SESSION_RENEW: Duration = Duration::from_secs(540);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The most requests a target may send in any hour, polls and live status together: about
/// four times what a busy UCM costs at the default intervals (docs/design.md §2.5), so it only
/// ever stops a defect or a misconfiguration from hammering the UCM.
pub const DEFAULT_MAX_REQUESTS_PER_HOUR: usize = 6000;
/// The queues whose callers and members one run of the queues collector reads (two requests
/// each); the others are read by the next runs in turn.
pub const DEFAULT_MAX_QUEUES_PER_RUN: usize = 20;

// Below these, a value is a typo (`1ms` for `1m`) rather than a choice: the exporter would poll
// in a busy loop, drop calls still in progress, or time out every request. They apply to a
// target's own overrides exactly as to the top-level values it would otherwise inherit.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const MIN_MAX_CALL_DURATION: Duration = Duration::from_secs(60);
const MIN_SESSION_RENEW: Duration = Duration::from_secs(10);
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(100);
const MIN_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A budget below this would fail a baseline or a busy sweep before it started.
const MIN_REQUESTS_PER_HOUR: usize = 100;
/// Each service level is a bucket of every group's wait histogram, so a few are plenty.
const MAX_SERVICE_LEVELS: usize = 8;
/// The longest wait that still reads as a service level: an hour.
const MAX_SERVICE_LEVEL: u64 = 3600;

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
    #[serde(default)]
    pub groups: Option<GroupsFile>,
    #[serde(default, with = "humantime_serde")]
    pub max_call_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
    #[serde(default)]
    pub window_mode: Option<WindowPreference>,
    #[serde(default, with = "humantime_serde")]
    pub end_margin: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub safety_sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub session_renew_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub status_interval: Option<Duration>,
    #[serde(default)]
    pub max_requests_per_hour: Option<usize>,
    #[serde(default)]
    pub max_queues_per_run: Option<usize>,
    #[serde(default)]
    pub collectors: CollectorSwitches,
    /// A directory of files each holding a `targets:` list (see [`load_targets_dir`]), read
    /// at start and on every reload; relative to the config file's directory.
    pub targets_dir: Option<PathBuf>,
    #[serde(default)]
    pub targets: Vec<TargetFile>,
}

/// One file of a `targets_dir`: a customer's UCMs, in the main file's `targets:` format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsFile {
    #[serde(default)]
    pub targets: Vec<TargetFile>,
}

/// Which live-status collectors run; a key left out keeps its default (all on but `storage`).
#[derive(Debug, Default, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CollectorSwitches {
    pub system: Option<bool>,
    pub trunks: Option<bool>,
    pub extensions: Option<bool>,
    pub channels: Option<bool>,
    pub queues: Option<bool>,
    pub groups: Option<bool>,
    pub storage: Option<bool>,
}

impl CollectorSwitches {
    fn apply(&self, on: &mut BTreeSet<Collector>) {
        let switches = [
            (Collector::System, self.system),
            (Collector::Trunks, self.trunks),
            (Collector::Extensions, self.extensions),
            (Collector::Channels, self.channels),
            (Collector::Queues, self.queues),
            (Collector::Groups, self.groups),
            (Collector::Storage, self.storage),
        ];
        for (c, switch) in switches {
            match switch {
                Some(true) => on.insert(c),
                Some(false) => on.remove(&c),
                None => false,
            };
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsFile {
    pub pattern: Option<String>,
    pub max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsFile {
    /// Waits (seconds) that become buckets of `ucm_group_wait_seconds`.
    pub service_level_seconds: Option<Vec<u64>>,
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
    pub window_mode: Option<WindowPreference>,
    #[serde(default, with = "humantime_serde")]
    pub status_interval: Option<Duration>,
    #[serde(default)]
    pub collectors: CollectorSwitches,
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

/// Which CDR windows a target may use (docs/design.md §2.4). The fast modes are used only once
/// the running UCM has shown that they work, and are left when a safety sweep finds a call they
/// missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowPreference {
    /// End windows if the UCM honours them, else channel-bounded windows if the channel lists
    /// are allowed, else start windows.
    #[default]
    Auto,
    /// Only end windows, when proven; start windows otherwise.
    End,
    /// Only channel-bounded windows, when allowed; start windows otherwise.
    Channels,
    /// Start windows with the fixed overlap and sweep: no probing, no channel lists.
    Start,
}

impl WindowPreference {
    pub fn allows_end(self) -> bool {
        matches!(self, WindowPreference::Auto | WindowPreference::End)
    }
    pub fn allows_channels(self) -> bool {
        matches!(self, WindowPreference::Auto | WindowPreference::Channels)
    }
}

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    /// Compiled once here, so that an invalid pattern is a config error naming the file rather
    /// than a failure at start-up.
    pub extension_pattern: ExtensionPattern,
    pub extension_max: usize,
    /// `groups.service_level_seconds`: buckets of `ucm_group_wait_seconds`.
    pub service_levels: Vec<u64>,
    /// Where more targets come from (`targets_dir`); with it, an empty target list is a valid
    /// configuration (a fleet exporter waiting for its first customer).
    pub targets_dir: Option<PathBuf>,
    pub targets: Vec<Target>,
}

impl Settings {
    /// The documented default extension settings, for settings built in code (the demo, tests)
    /// rather than read from a file.
    pub fn new(state_dir: impl Into<PathBuf>, targets: Vec<Target>) -> Self {
        Settings {
            state_dir: state_dir.into(),
            extension_pattern: default_extension_pattern(),
            extension_max: DEFAULT_EXTENSION_MAX,
            service_levels: DEFAULT_SERVICE_LEVELS.to_vec(),
            targets_dir: None,
            targets,
        }
    }
}

fn default_extension_pattern() -> ExtensionPattern {
    ExtensionPattern::new(ExtensionPattern::DEFAULT).expect("the default pattern compiles")
}

/// One UCM to poll. Compared whole on reload: a target whose settings differ in any way
/// (its password included) is restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// Base URL; requests go to `<url>/api`.
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// The UCM's zone as configured; `None`: follow the offset the UCM reports.
    pub timezone: Option<chrono_tz::Tz>,
    /// The zone used while a followed UCM has not told its offset (its status refused): the
    /// host's.
    pub fallback_zone: chrono_tz::Tz,
    pub poll_interval: Duration,
    pub max_call_duration: Duration,
    pub sweep_interval: Duration,
    pub overlap: Duration,
    /// How long after its end a grouped call is held back before it is counted, for a UCM that
    /// writes legs of a call (a transfer) after the call first appears. 0: counted at once.
    pub settle: Duration,
    pub window_mode: WindowPreference,
    /// See [`DEFAULT_END_MARGIN`].
    pub end_margin: Duration,
    /// See [`DEFAULT_SAFETY_SWEEP_INTERVAL`].
    pub safety_sweep_interval: Duration,
    pub session_renew_after: Duration,
    pub request_timeout: Duration,
    /// How often the live status is read; unless set, the poll interval: one status read per
    /// poll keeps a UCM at about ten requests a minute, and the exporter's share of a core for
    /// a thousand of them small (README, Performance). Set `30s` for quicker trunk alerts.
    pub status_interval: Duration,
    /// See [`DEFAULT_MAX_REQUESTS_PER_HOUR`].
    pub max_requests_per_hour: usize,
    /// See [`DEFAULT_MAX_QUEUES_PER_RUN`].
    pub max_queues_per_run: usize,
    /// The live-status collectors that run.
    pub collectors: BTreeSet<Collector>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl Target {
    /// Every setting other than how to reach and log in to the UCM at its documented default.
    /// The time zone is set to UTC, not followed from the UCM as the config file defaults to,
    /// so that a target built in code asks nothing extra of the UCM and behaves the same on
    /// every machine.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        username: impl Into<String>,
        password: Secret,
    ) -> Self {
        Target {
            name: name.into(),
            url: url.into(),
            username: username.into(),
            password,
            timezone: Some(chrono_tz::UTC),
            fallback_zone: chrono_tz::UTC,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_call_duration: DEFAULT_MAX_CALL_DURATION,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            overlap: DEFAULT_OVERLAP,
            settle: Duration::ZERO,
            window_mode: WindowPreference::Auto,
            end_margin: DEFAULT_END_MARGIN,
            safety_sweep_interval: DEFAULT_SAFETY_SWEEP_INTERVAL,
            session_renew_after: DEFAULT_SESSION_RENEW,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            status_interval: DEFAULT_POLL_INTERVAL,
            max_requests_per_hour: DEFAULT_MAX_REQUESTS_PER_HOUR,
            max_queues_per_run: DEFAULT_MAX_QUEUES_PER_RUN,
            collectors: Collector::ALL
                .into_iter()
                .filter(|c| c.on_by_default())
                .collect(),
            ca_file: None,
            insecure_skip_verify: false,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url.trim_end_matches('/'))
    }

    /// Checks the values the target ended up with, not where they came from, so that a
    /// per-target override, an inherited top-level value and a flag all meet the same rules.
    /// Errors name the config file's key; the caller adds the file and the target.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        check_url(&self.url)?;
        if self.username.is_empty() {
            bail!("username is empty; use the API user of *HTTPS API Settings (New)*");
        }
        if self.password.expose().is_empty() {
            bail!("password is empty");
        }
        self.check_durations()?;
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                bail!("tls.ca_file {} does not exist", ca.display());
            }
        }
        Ok(())
    }

    fn check_durations(&self) -> Result<()> {
        check_min("poll_interval", self.poll_interval, MIN_POLL_INTERVAL)?;
        check_min("sweep_interval", self.sweep_interval, MIN_SWEEP_INTERVAL)?;
        check_min(
            "safety_sweep_interval",
            self.safety_sweep_interval,
            MIN_SWEEP_INTERVAL,
        )?;
        if self.end_margin > self.max_call_duration {
            bail!(
                "end_margin is {}, longer than max_call_duration {}",
                humantime::format_duration(self.end_margin),
                humantime::format_duration(self.max_call_duration)
            );
        }
        check_min(
            "max_call_duration",
            self.max_call_duration,
            MIN_MAX_CALL_DURATION,
        )?;
        check_min(
            "session_renew_after",
            self.session_renew_after,
            MIN_SESSION_RENEW,
        )?;
        check_min("request_timeout", self.request_timeout, MIN_REQUEST_TIMEOUT)?;
        check_min("status_interval", self.status_interval, MIN_STATUS_INTERVAL)?;
        if self.max_requests_per_hour < MIN_REQUESTS_PER_HOUR {
            bail!(
                "max_requests_per_hour is {}, less than the minimum {MIN_REQUESTS_PER_HOUR}",
                self.max_requests_per_hour
            );
        }
        if self.max_queues_per_run == 0 {
            bail!("max_queues_per_run is 0; at least one queue must be read per run");
        }
        Ok(())
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
    pub targets_dir: Option<PathBuf>,
}

/// Parses a YAML config file. `source` names the file in every error.
pub fn parse_file(text: &str, source: &Path) -> Result<FileConfig> {
    // A file of nothing but comments is as empty as a blank one (YAML reads both as null); say
    // so rather than let serde complain about a null value.
    let blank = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    });
    if blank {
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
    let extension_pattern = match ext.and_then(|e| e.pattern.as_deref()) {
        Some(p) => ExtensionPattern::new(p).map_err(|e| {
            anyhow::anyhow!("{src}: extensions.pattern is not a valid regular expression: {e}")
        })?,
        None => default_extension_pattern(),
    };
    let extension_max = ext.and_then(|e| e.max).unwrap_or(DEFAULT_EXTENSION_MAX);
    if extension_max == 0 {
        bail!("{src}: extensions.max must be at least 1");
    }
    let service_levels = match fc
        .groups
        .as_ref()
        .and_then(|g| g.service_level_seconds.clone())
    {
        Some(levels) => {
            if levels.is_empty() || levels.len() > MAX_SERVICE_LEVELS {
                bail!(
                    "{src}: groups.service_level_seconds needs 1 to {MAX_SERVICE_LEVELS} values, got {}",
                    levels.len()
                );
            }
            if let Some(bad) = levels.iter().find(|&&l| l == 0 || l > MAX_SERVICE_LEVEL) {
                bail!(
                    "{src}: groups.service_level_seconds: {bad} is not a wait between 1 and {MAX_SERVICE_LEVEL} seconds"
                );
            }
            levels
        }
        None => DEFAULT_SERVICE_LEVELS.to_vec(),
    };
    let state_dir = overrides
        .state_dir
        .clone()
        .or_else(|| fc.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let defaults = TargetDefaults {
        poll_interval: overrides
            .poll_interval
            .or(fc.poll_interval)
            .unwrap_or(DEFAULT_POLL_INTERVAL),
        max_call_duration: fc.max_call_duration.unwrap_or(DEFAULT_MAX_CALL_DURATION),
        sweep_interval: fc.sweep_interval.unwrap_or(DEFAULT_SWEEP_INTERVAL),
        overlap: fc.overlap.unwrap_or(DEFAULT_OVERLAP),
        settle: fc.settle.unwrap_or(Duration::ZERO),
        window_mode: fc.window_mode.unwrap_or_default(),
        end_margin: fc.end_margin.unwrap_or(DEFAULT_END_MARGIN),
        safety_sweep_interval: fc
            .safety_sweep_interval
            .unwrap_or(DEFAULT_SAFETY_SWEEP_INTERVAL),
        session_renew_after: fc.session_renew_after.unwrap_or(DEFAULT_SESSION_RENEW),
        request_timeout: fc.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        status_interval: fc.status_interval,
        max_requests_per_hour: fc
            .max_requests_per_hour
            .unwrap_or(DEFAULT_MAX_REQUESTS_PER_HOUR),
        max_queues_per_run: fc.max_queues_per_run.unwrap_or(DEFAULT_MAX_QUEUES_PER_RUN),
        collectors: fc.collectors.clone(),
    };
    // Checked once on their own, so that a bad top-level value is reported at its top-level key
    // (and even with no targets) instead of at every target that inherits it.
    defaults
        .check()
        .map_err(|e| anyhow::anyhow!("{src}: {e:#}"))?;

    let mut targets = Vec::new();
    for (i, t) in fc.targets.iter().enumerate() {
        let resolved = resolve_file_target(t, &defaults, env).and_then(|target| {
            target.validate()?;
            Ok(target)
        });
        targets.push(
            resolved.with_context(|| format!("{src}: targets[{i}] ({})", display_name(&t.name)))?,
        );
    }
    let targets_dir = overrides.targets_dir.clone().or_else(|| {
        let dir = fc.targets_dir.as_ref()?;
        let base = file.and_then(|(_, p)| p.parent()).unwrap_or(Path::new(""));
        Some(base.join(dir))
    });
    let mut origin: Vec<String> = vec![src.clone(); targets.len()];
    if let Some(dir) = &targets_dir {
        for (path, tf) in load_targets_dir(dir).with_context(|| src.clone())? {
            for (i, t) in tf.targets.iter().enumerate() {
                let resolved = resolve_file_target(t, &defaults, env).and_then(|target| {
                    target.validate()?;
                    Ok(target)
                });
                targets.push(resolved.with_context(|| {
                    format!(
                        "{}: targets[{i}] ({})",
                        path.display(),
                        display_name(&t.name)
                    )
                })?);
                origin.push(path.display().to_string());
            }
        }
    }
    if let Some(ft) = flag_target {
        let target = resolve_flag_target(ft, &defaults)?;
        target.validate().with_context(|| {
            format!(
                "command line: the --ucm.* target ({})",
                display_name(&target.name)
            )
        })?;
        targets.push(target);
        origin.push("command line".into());
    }
    let mut names = std::collections::HashMap::new();
    for (t, from) in targets.iter().zip(&origin) {
        if let Some(first) = names.insert(t.name.as_str(), from) {
            if first == from {
                bail!(
                    "{from}: target name {:?} is used twice; names must be unique",
                    t.name
                );
            }
            bail!(
                "target name {:?} is used in both {first} and {from}; names must be unique",
                t.name
            );
        }
    }
    Ok(Settings {
        state_dir,
        extension_pattern,
        extension_max,
        service_levels,
        targets_dir,
        targets,
    })
}

/// Reads the files of a `targets_dir`, sorted by name. Only `*.yml` and `*.yaml` files are
/// read; hidden files (an editor's `.name.yml.swp`, a half-written `.tmp`) and anything else
/// are left alone, so that saving a file in place or copying one in never reads half a file
/// under a name that counts.
pub fn load_targets_dir(dir: &Path) -> Result<Vec<(PathBuf, TargetsFile)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read targets_dir {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read targets_dir {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
        if yaml && !name.starts_with('.') && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read targets file {}", path.display()))?;
            // An empty file is a customer with no UCM yet, not a mistake.
            let blank = text.lines().all(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with('#')
            });
            let tf = if blank {
                TargetsFile::default()
            } else {
                serde_yaml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))?
            };
            Ok((path, tf))
        })
        .collect()
}

/// The top-level values a target inherits unless it overrides them.
struct TargetDefaults {
    poll_interval: Duration,
    max_call_duration: Duration,
    sweep_interval: Duration,
    overlap: Duration,
    settle: Duration,
    window_mode: WindowPreference,
    end_margin: Duration,
    safety_sweep_interval: Duration,
    session_renew_after: Duration,
    request_timeout: Duration,
    /// Unset: each target's own poll interval (see [`Target::status_interval`]).
    status_interval: Option<Duration>,
    max_requests_per_hour: usize,
    max_queues_per_run: usize,
    collectors: CollectorSwitches,
}

impl TargetDefaults {
    /// A target's values with every override left out, so that the top-level values are held
    /// to exactly the rules of [`Target::validate`].
    fn check(&self) -> Result<()> {
        let mut t = Target::new("", "", "", Secret::new(""));
        self.apply(&mut t);
        t.check_durations()
    }

    fn apply(&self, t: &mut Target) {
        t.poll_interval = self.poll_interval;
        t.max_call_duration = self.max_call_duration;
        t.sweep_interval = self.sweep_interval;
        t.overlap = self.overlap;
        t.settle = self.settle;
        t.window_mode = self.window_mode;
        t.end_margin = self.end_margin;
        t.safety_sweep_interval = self.safety_sweep_interval;
        t.session_renew_after = self.session_renew_after;
        t.request_timeout = self.request_timeout;
        t.status_interval = self.status_interval.unwrap_or(t.poll_interval);
        t.max_requests_per_hour = self.max_requests_per_hour;
        t.max_queues_per_run = self.max_queues_per_run;
        self.collectors.apply(&mut t.collectors);
    }
}

fn display_name(n: &str) -> &str {
    if n.is_empty() {
        "unnamed"
    } else {
        n
    }
}

fn check_min(key: &str, d: Duration, min: Duration) -> Result<()> {
    if d < min {
        bail!(
            "{key} is {}, less than the minimum {}",
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

fn check_url(url: &str) -> Result<()> {
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
    Ok(())
}

/// A `timezone` setting; unset, the exporter follows the UCM's reported offset, with the host's
/// zone until it knows it.
fn set_timezone(target: &mut Target, tz: Option<&str>) -> Result<()> {
    target.timezone = tz
        .map(|name| {
            name.parse::<chrono_tz::Tz>().map_err(|_| {
                anyhow::anyhow!("timezone {name:?} is not an IANA zone name (like Europe/Berlin)")
            })
        })
        .transpose()?;
    target.fallback_zone = local_timezone();
    Ok(())
}

/// The exporter host's zone, from `TZ` or `/etc/timezone`/`/etc/localtime`, falling back to UTC:
/// the zone of a UCM whose own offset is not known.
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

/// Turns one `targets:` entry into a [`Target`]: where its password comes from, its zone and its
/// overrides. Whether the result is usable is [`Target::validate`]'s job.
fn resolve_file_target(
    t: &TargetFile,
    d: &TargetDefaults,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target> {
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
    let mut target = Target::new(
        t.name.clone(),
        t.url.trim_end_matches('/'),
        t.username.clone(),
        password,
    );
    set_timezone(&mut target, t.timezone.as_deref())?;
    d.apply(&mut target);
    if let Some(v) = t.poll_interval {
        target.poll_interval = v;
    }
    if let Some(v) = t.max_call_duration {
        target.max_call_duration = v;
    }
    if let Some(v) = t.window_mode {
        target.window_mode = v;
    }
    // After the poll interval, which it follows unless set.
    target.status_interval = t
        .status_interval
        .or(d.status_interval)
        .unwrap_or(target.poll_interval);
    t.collectors.apply(&mut target.collectors);
    if let Some(v) = t.request_timeout {
        target.request_timeout = v;
    }
    target.ca_file = t.tls.ca_file.clone();
    target.insecure_skip_verify = t.tls.insecure_skip_verify;
    Ok(target)
}

fn resolve_flag_target(ft: &FlagTarget, d: &TargetDefaults) -> Result<Target> {
    let name = if ft.name.is_empty() { "ucm" } else { &ft.name };
    let password = match (&ft.password_file, &ft.password_env_value) {
        (Some(p), _) => read_password_file(p).context("--ucm.password-file")?,
        (None, Some(v)) if !v.is_empty() => Secret::new(v.clone()),
        _ => bail!("--ucm.url needs a password: --ucm.password-file PATH or the UCM_PASSWORD environment variable"),
    };
    let mut target = Target::new(
        name,
        ft.url.trim_end_matches('/'),
        ft.username.clone(),
        password,
    );
    set_timezone(&mut target, ft.timezone.as_deref()).context("--ucm.timezone")?;
    d.apply(&mut target);
    target.ca_file = ft.ca_file.clone();
    target.insecure_skip_verify = ft.insecure_skip_verify;
    Ok(target)
}

/// The live-status collectors, the `collector` label of their health series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collector {
    System,
    Trunks,
    Extensions,
    Channels,
    Queues,
    Groups,
    Storage,
}

impl Collector {
    pub const ALL: [Collector; 7] = [
        Collector::System,
        Collector::Trunks,
        Collector::Extensions,
        Collector::Channels,
        Collector::Queues,
        Collector::Groups,
        Collector::Storage,
    ];

    /// On unless switched off: all but storage, whose availability to an API user is unproven.
    pub const fn on_by_default(self) -> bool {
        !matches!(self, Collector::Storage)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Collector::System => "system",
            Collector::Trunks => "trunks",
            Collector::Extensions => "extensions",
            Collector::Channels => "channels",
            Collector::Queues => "queues",
            Collector::Groups => "groups",
            Collector::Storage => "storage",
        }
    }

    /// The actions the collector asks for, for `check` and the README.
    pub const fn actions(self) -> &'static str {
        match self {
            Collector::System => "getSystemGeneralStatus, getSystemStatus",
            Collector::Trunks => "listAllTrunk (or listVoIPTrunk and getSIPTrunk)",
            Collector::Extensions => "listAccount",
            Collector::Channels => "listBridgedChannels, listUnBridgedChannels",
            Collector::Queues => {
                "getCallQueuesMessage, getQueueCalling, getCallQueuesMemberMessage"
            }
            Collector::Groups => "listQueue, listRingGroup, listIVR",
            Collector::Storage => "getStorageUsage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The one variable a test config's `password_env` may name; any other is unset.
    fn test_env(k: &str) -> Option<String> {
        (k == "OFFICE_PW").then(|| "pw-from-env".to_string())
    }

    fn resolve_text(text: &str) -> Result<Settings> {
        let p = Path::new("test.yml");
        let fc = parse_file(text, p)?;
        resolve(Some((&fc, p)), None, &FlagOverrides::default(), &test_env)
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
        assert!(s.extension_pattern.is_local("123") && !s.extension_pattern.is_local("1234"));
        assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
        let t = &s.targets[0];
        assert_eq!(t.api_url(), "https://ucm.example.com:8089/api");
        assert_eq!(t.password.expose(), "pw-from-env");
        assert_eq!(t.poll_interval, Duration::from_secs(30));
        assert_eq!(t.timezone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(format!("{:?}", t.password), "Secret(***)");
    }

    /// Every file in `tests/fixtures/config/` goes through what `--config.file` does:
    /// `invalid-*.yml` must fail with an error that names the file and contains what its first
    /// line, `# error: <substring>`, promises; `valid-*.yml` must resolve.
    #[test]
    fn targets_dir_files_are_read_in_order_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.yml");
        std::fs::write(&main, "targets_dir: t.d\ntargets: []\n").unwrap();
        let td = dir.path().join("t.d");
        std::fs::create_dir(&td).unwrap();
        let entry = |n: &str| {
            format!("  - {{name: {n}, url: \"https://{n}:8089\", username: u, password_env: OFFICE_PW}}\n")
        };
        let resolve_main = || {
            let fc = load_file(&main).unwrap();
            resolve(
                Some((&fc, &main)),
                None,
                &FlagOverrides::default(),
                &test_env,
            )
        };
        std::fs::write(td.join("b.yaml"), format!("targets:\n{}", entry("bee"))).unwrap();
        std::fs::write(td.join("a.yml"), format!("targets:\n{}", entry("ay"))).unwrap();
        std::fs::write(td.join("empty.yml"), "# no UCM yet\n").unwrap();
        for ignored in [
            ".a.yml.swp",
            "c.yml~",
            "d.yml.bak",
            "notes.txt",
            ".hidden.yml",
        ] {
            std::fs::write(td.join(ignored), "not: [yaml").unwrap();
        }
        let s = resolve_main().unwrap();
        let names: Vec<&str> = s.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ay", "bee"]);
        assert_eq!(s.targets_dir.as_deref(), Some(td.as_path()));
        // A bad value names the file, the entry and the key.
        std::fs::write(
            td.join("c.yml"),
            "targets:\n  - {name: cee, url: \"https://c:8089\", username: u, password_env: OFFICE_PW, poll_interval: 1ms}\n",
        )
        .unwrap();
        let err = format!("{:#}", resolve_main().unwrap_err());
        assert!(
            err.contains("c.yml: targets[0] (cee)") && err.contains("poll_interval"),
            "{err}"
        );
        std::fs::write(
            td.join("c.yml"),
            "targets:\n  - {name: cee, url: x, typo: 1}\n",
        )
        .unwrap();
        let err = format!("{:#}", resolve_main().unwrap_err());
        assert!(
            err.contains("c.yml") && err.contains("unknown field `typo`"),
            "{err}"
        );
        // The same name in two files names both.
        std::fs::write(td.join("c.yml"), format!("targets:\n{}", entry("ay"))).unwrap();
        let err = format!("{:#}", resolve_main().unwrap_err());
        assert!(
            err.contains("\"ay\" is used in both")
                && err.contains("a.yml")
                && err.contains("c.yml"),
            "{err}"
        );
    }

    #[test]
    fn config_fixtures_fail_or_resolve_as_named() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let (mut invalid, mut valid) = (0, 0);
        for path in &paths {
            let file = path.file_name().unwrap().to_str().unwrap();
            let result = load_file(path).and_then(|fc| {
                resolve(
                    Some((&fc, path)),
                    None,
                    &FlagOverrides::default(),
                    &test_env,
                )
            });
            if file.starts_with("invalid-") {
                invalid += 1;
                let text = std::fs::read_to_string(path).unwrap();
                let want = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# error: "))
                    .unwrap_or_else(|| panic!("{file}: the first line must be `# error: ...`"));
                let err = match result {
                    Ok(_) => panic!("{file}: resolved, but should fail with {want:?}"),
                    Err(e) => format!("{e:#}"),
                };
                assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
                assert!(err.contains(file), "{file}: {err:?} does not name the file");
            } else if file.starts_with("valid-") {
                valid += 1;
                let s = result.unwrap_or_else(|e| panic!("{file}: {e:#}"));
                assert!(!s.targets.is_empty(), "{file}: no targets");
            } else {
                panic!("{file}: fixture names start with invalid- or valid-");
            }
        }
        assert!(
            invalid >= 20 && valid >= 2,
            "{invalid} invalid, {valid} valid"
        );
    }

    #[test]
    fn the_status_interval_follows_each_targets_poll_interval_unless_set() {
        let target = |name: &str, extra: &str| {
            format!(
                "  - name: {name}\n    url: https://{name}\n    username: u\n    \
                 password_env: OFFICE_PW\n{extra}"
            )
        };
        let intervals = |text: &str| -> Vec<(u64, u64)> {
            let s = resolve_text(text).unwrap();
            s.targets
                .iter()
                .map(|t| (t.poll_interval.as_secs(), t.status_interval.as_secs()))
                .collect()
        };
        let targets = [
            target("a", ""),
            target("b", "    poll_interval: 2m\n"),
            target("c", "    status_interval: 20s\n"),
        ]
        .concat();
        assert_eq!(
            intervals(&format!("targets:\n{targets}")),
            [(60, 60), (120, 120), (60, 20)]
        );
        assert_eq!(
            intervals(&format!("poll_interval: 90s\ntargets:\n{targets}")),
            [(90, 90), (120, 120), (90, 20)]
        );
        assert_eq!(
            intervals(&format!("status_interval: 30s\ntargets:\n{targets}")),
            [(60, 30), (120, 30), (60, 20)]
        );
    }

    #[test]
    fn per_target_minimums_name_file_target_and_key() {
        let err = resolve_text(
            "targets:\n  - name: office\n    url: https://h\n    username: u\n    \
             password_env: OFFICE_PW\n    max_call_duration: 30s\n",
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "test.yml: targets[0] (office): max_call_duration is 30s, less than the minimum 1m"
        );
        let err = resolve_text("max_call_duration: 30s\n").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "test.yml: max_call_duration is 30s, less than the minimum 1m"
        );
    }

    #[test]
    fn a_target_built_in_code_is_valid() {
        let t = Target::new("office", "https://ucm:8089", "cdrapi", Secret::new("pw"));
        t.validate().unwrap();
        assert_eq!(t.timezone, Some(chrono_tz::UTC));
        let s = Settings::new("/tmp/state", vec![t]);
        assert!(s.extension_pattern.is_local("1234"));
        assert_eq!(s.extension_max, DEFAULT_EXTENSION_MAX);
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
        let overrides = FlagOverrides {
            poll_interval: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let err = resolve(None, Some(&ft), &overrides, &no_env).unwrap_err();
        assert!(
            format!("{err:#}").contains("poll_interval is 10ms"),
            "{err:#}"
        );
        let ft = FlagTarget {
            url: "ftp://h".into(),
            ..ft
        };
        let err = resolve(None, Some(&ft), &FlagOverrides::default(), &no_env).unwrap_err();
        assert!(
            format!("{err:#}").contains("--ucm.* target (ucm)"),
            "{err:#}"
        );
    }
}
