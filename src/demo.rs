//! `ucm-exporter demo`: a simulated UCM in-process and the exporter polling it, so anyone can
//! see the metrics move without a PBX.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::clock::{Clock, SharedClock};
use crate::config::{Secret, Settings, Target};
use crate::exporter::{self, Exporter};
use ucm_sim::{self as sim, SimConfig, SimHandle};

/// The simulator's clock as the exporter's: in the demo, where the simulated day runs ahead of
/// the host's, and in tests, where the frozen simulated clock makes sweeps, cookie renewal and
/// back-offs come due by `advance()` instead of by sleeping, on any date the tests run.
/// The instant is the simulator's local time read in the simulator's zone.
#[derive(Clone)]
pub struct SimTime(pub SimHandle);

impl SimTime {
    pub fn shared(sim: &SimHandle) -> SharedClock {
        Arc::new(SimTime(sim.clone()))
    }
}

impl Clock for SimTime {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.utc_now()
    }

    fn monotonic(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Calls per hour of the demo's simulated office: busy enough that counters move every poll.
const DEMO_CALLS_PER_HOUR: f64 = 1200.0;
const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Takes only the command-line values the demo honours, so that it can be started without a
/// parsed command line. Without `state_dir` the poll state lives in a temporary directory.
pub async fn run(
    listen_address: &str,
    telemetry_path: &str,
    poll_interval: Option<Duration>,
    state_dir: Option<&Path>,
) -> Result<()> {
    // The simulated office day starts at 10:00 today (UTC), so the demo is busy whatever the
    // hour: traffic follows the time of day. The exporter reads the simulator's clock, so the
    // simulated morning is its "now" too.
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
    let state_dir = match state_dir {
        Some(d) => d.to_path_buf(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let sim_cfg = SimConfig::default();
    let mut target = Target::new(
        "demo",
        sim.url(),
        sim_cfg.username,
        Secret::new(sim_cfg.password),
    );
    target.poll_interval = poll_interval.unwrap_or(DEMO_POLL_INTERVAL);
    target.ca_file = Some(sim.ca_path());
    target.validate().context("demo")?;
    let settings = Settings::new(state_dir, vec![target]);
    let running = Exporter::new(settings.clone())
        .listen(listen_address)
        .telemetry_path(telemetry_path)
        .clock(SimTime::shared(&sim))
        .start()
        .await?;
    let port = running.addr().port();
    println!("ucm-exporter demo: a simulated UCM with {DEMO_CALLS_PER_HOUR} calls/hour and the exporter polling it every {}s",
        settings.targets[0].poll_interval.as_secs());
    println!(
        "  metrics:        http://localhost:{port}{}",
        telemetry_path
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
        telemetry_path
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
