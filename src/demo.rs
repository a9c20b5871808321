//! `ucm-exporter demo`: a simulated UCM in-process and the exporter polling it, so anyone can
//! see the metrics move without a PBX.

use std::time::Duration;

use anyhow::Result;

use crate::cli::Cli;
use crate::config::{self, Secret, Settings, Target};
use crate::exporter::{self, Exporter};
use ucm_sim::{self as sim, SimConfig};

/// Calls per hour of the demo's simulated office: busy enough that counters move every poll.
const DEMO_CALLS_PER_HOUR: f64 = 1200.0;
const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(10);

pub async fn run(cli: &Cli) -> Result<()> {
    // The simulated office day starts at 10:00 today (UTC), so the demo is busy whatever the
    // hour: traffic follows the time of day.
    let morning = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .expect("valid time");
    let sim = sim::start(SimConfig {
        calls_per_hour: DEMO_CALLS_PER_HOUR,
        start_time: Some(morning),
        ..SimConfig::default()
    })
    .await?;
    let tmp;
    let state_dir = match &cli.state_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let password = SimConfig::default().password;
    let settings = Settings {
        state_dir,
        extension_pattern: config::DEFAULT_EXTENSION_PATTERN.into(),
        extension_max: config::DEFAULT_EXTENSION_MAX,
        targets: vec![Target {
            name: "demo".into(),
            url: sim.url(),
            username: SimConfig::default().username,
            password: Secret::new(password),
            timezone: chrono_tz::UTC,
            poll_interval: cli.poll_interval.unwrap_or(DEMO_POLL_INTERVAL),
            max_call_duration: config::DEFAULT_MAX_CALL_DURATION,
            sweep_interval: config::DEFAULT_SWEEP_INTERVAL,
            overlap: config::DEFAULT_OVERLAP,
            session_renew_after: config::DEFAULT_SESSION_RENEW,
            request_timeout: config::DEFAULT_REQUEST_TIMEOUT,
            ca_file: Some(sim.ca_path()),
            insecure_skip_verify: false,
        }],
    };
    let running = Exporter::new(settings.clone())
        .listen(&cli.listen_address)
        .telemetry_path(&cli.telemetry_path)
        .start()
        .await?;
    let port = running.addr().port();
    println!("ucm-exporter demo: a simulated UCM with {DEMO_CALLS_PER_HOUR} calls/hour and the exporter polling it every {}s",
        settings.targets[0].poll_interval.as_secs());
    println!(
        "  metrics:        http://localhost:{port}{}",
        cli.telemetry_path
    );
    println!("  probe:          http://localhost:{port}/probe?target=demo");
    println!("  landing page:   http://localhost:{port}/");
    println!(
        "  simulated UCM:  {}/api (CA certificate: {})",
        sim.url(),
        sim.ca_path().display()
    );
    println!(
        "Try: curl -s localhost:{port}{} | grep ucm_calls_total",
        cli.telemetry_path
    );
    println!("Stop with Ctrl-C.");
    let token = running.shutdown_token();
    tokio::spawn(async move {
        exporter::shutdown_signal().await;
        token.cancel();
    });
    running.wait().await;
    sim.shutdown().await;
    Ok(())
}
