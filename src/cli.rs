//! The command line, in Prometheus exporter style (`--config.file`, `--web.listen-address`, …).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, FlagOverrides, FlagTarget, Settings};

/// Default port of the exporter.
pub const DEFAULT_PORT: u16 = 9736;

#[derive(Debug, Parser)]
#[command(
    name = "ucm-exporter",
    version,
    about = "Prometheus exporter for Grandstream UCM call detail records",
    long_about = "Prometheus exporter for Grandstream UCM call detail records.\n\n\
        Keeps a renewing API session to each UCM, pulls new CDRs every poll interval without counting a call \
        twice, and serves call counts, durations and dispositions per trunk and extension.\n\n\
        Without --config.file or --ucm.url it runs the demo against a built-in UCM simulator."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML configuration file (see README: Configuration).
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for the web interface and telemetry.
    #[arg(
        long = "web.listen-address",
        value_name = "HOST:PORT",
        default_value = ":9736",
        global = true
    )]
    pub listen_address: String,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        global = true
    )]
    pub telemetry_path: String,

    /// TLS and basic auth for the web interface, in the Prometheus exporter-toolkit format
    /// (see README: Web security). Re-read when it or its certificates change.
    #[arg(long = "web.config.file", value_name = "PATH", global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// URL of a single UCM to poll without a config file, e.g. https://ucm.example.com:8089.
    #[arg(long = "ucm.url", value_name = "URL", global = true)]
    pub ucm_url: Option<String>,

    /// Name of the single UCM (its state file and /probe name).
    #[arg(
        long = "ucm.name",
        value_name = "NAME",
        default_value = "ucm",
        global = true
    )]
    pub ucm_name: String,

    /// API user of the single UCM (HTTPS API Settings (New)).
    #[arg(
        long = "ucm.username",
        value_name = "USER",
        default_value = "cdrapi",
        global = true
    )]
    pub ucm_username: String,

    /// File holding the API user's password (or set UCM_PASSWORD). Never pass it on the command line.
    #[arg(long = "ucm.password-file", value_name = "PATH", global = true)]
    pub ucm_password_file: Option<PathBuf>,

    /// Accept any TLS certificate from the UCM. A last resort: prefer --ucm.ca-file.
    #[arg(long = "ucm.insecure-skip-verify", global = true)]
    pub ucm_insecure_skip_verify: bool,

    /// PEM file with the CA (or the UCM's self-signed certificate) to trust, and nothing else.
    #[arg(long = "ucm.ca-file", value_name = "PATH", global = true)]
    pub ucm_ca_file: Option<PathBuf>,

    /// IANA time zone of the UCM's clock (default: the exporter host's zone).
    #[arg(long = "ucm.timezone", value_name = "ZONE", global = true)]
    pub ucm_timezone: Option<String>,

    /// How often to poll each UCM for new CDRs (default 60s).
    #[arg(long = "poll.interval", value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    pub poll_interval: Option<Duration>,

    /// Directory for the per-target poll state (default /var/lib/ucm-exporter).
    #[arg(long = "state.dir", value_name = "PATH", global = true)]
    pub state_dir: Option<PathBuf>,

    /// Directory of YAML files (*.yml, *.yaml), each with a `targets:` list, read at start and
    /// on every reload (SIGHUP, POST /-/reload); overrides the config file's targets_dir.
    #[arg(long = "targets.dir", value_name = "PATH", global = true)]
    pub targets_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the config, log in to each UCM, fetch one CDR page, print a summary; exit non-zero on any problem.
    Check {
        /// Try to log in even while rejected logins are rationed (3 in a row, then one an hour).
        /// The UCM blacklists an IP after a few failures: use once the password is fixed.
        #[arg(long)]
        force: bool,
    },
    /// Start an in-process simulated UCM and the exporter against it, and print the URLs.
    Demo,
    /// Write a target's past calls as OpenMetrics for `promtool tsdb create-blocks-from
    /// openmetrics`: the series the exporter serves, at a fixed step (see README: Backfill).
    Backfill {
        /// The configured target (its `name`) to read.
        #[arg(long, value_name = "NAME")]
        target: String,
        /// First day to read, in the UCM's local time: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS.
        #[arg(long, value_name = "DATE")]
        from: String,
        /// Where to stop (exclusive), as --from. Default: where the exporter's poll state of the
        /// target starts counting, so that no call is counted by both.
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// The OpenMetrics file; its progress is kept in FILE.progress, and a stopped run
        /// continues where it stopped.
        #[arg(long, value_name = "FILE", default_value = "backfill.om")]
        output: PathBuf,
        /// Time between samples.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        step: Duration,
        /// A label the scrape adds to the live series (e.g. instance=office), added to every
        /// sample so that backfilled and live samples form the same series. Repeatable.
        #[arg(long = "label", value_name = "NAME=VALUE", value_parser = crate::backfill::parse_label)]
        labels: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// True when no UCM is configured at all: plain `ucm-exporter` then runs the demo.
    pub fn nothing_configured(&self) -> bool {
        self.config_file.is_none() && self.ucm_url.is_none() && self.targets_dir.is_none()
    }

    /// Resolves the settings from the file and flags; the password comes from `UCM_PASSWORD`
    /// through `env`.
    pub fn settings(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let file = match &self.config_file {
            Some(p) => Some((config::load_file(p)?, p.clone())),
            None => None,
        };
        let flag_target = self.ucm_url.as_ref().map(|url| FlagTarget {
            name: self.ucm_name.clone(),
            url: url.clone(),
            username: self.ucm_username.clone(),
            password_file: self.ucm_password_file.clone(),
            password_env_value: env("UCM_PASSWORD"),
            timezone: self.ucm_timezone.clone(),
            insecure_skip_verify: self.ucm_insecure_skip_verify,
            ca_file: self.ucm_ca_file.clone(),
        });
        let overrides = FlagOverrides {
            poll_interval: self.poll_interval,
            state_dir: self.state_dir.clone(),
            targets_dir: self.targets_dir.clone(),
        };
        let settings = config::resolve(
            file.as_ref().map(|(f, p)| (f, p.as_path())),
            flag_target.as_ref(),
            &overrides,
            env,
        )?;
        if settings.targets.is_empty() && settings.targets_dir.is_none() {
            anyhow::bail!(
                "no UCM configured: add targets to {} or pass --ucm.url",
                self.config_file
                    .as_ref()
                    .map_or("the config file".into(), |p| p.display().to_string())
            );
        }
        Ok(settings)
    }
}

/// Sets up `tracing` output. Library crates are kept at warn so the log shows the exporter's own
/// events, one line each. The level filters stderr only: the journal behind
/// `/probe?debug=true` keeps each target's last poll at debug whatever it says.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter =
        tracing_subscriber::EnvFilter::new(format!("warn,ucm_exporter={level},ucm_sim={level}"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let stderr = if format == LogFormat::Json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(crate::journal::layer())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_in_prometheus_style() {
        let cli = Cli::try_parse_from([
            "ucm-exporter",
            "--web.listen-address=127.0.0.1:0",
            "--ucm.url",
            "https://ucm:8089",
            "--poll.interval",
            "30s",
            "check",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Check { force: false })));
        assert_eq!(cli.poll_interval, Some(Duration::from_secs(30)));
        assert!(!cli.nothing_configured());
        let s = cli
            .settings(&|k| (k == "UCM_PASSWORD").then(|| "pw".into()))
            .unwrap();
        assert_eq!(s.targets[0].poll_interval, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["ucm-exporter", "--ucm.password", "x"]).is_err());
    }
}
