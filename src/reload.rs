//! Reloading the configuration (SIGHUP, `POST /-/reload`), as Prometheus does: the settings are
//! read again from the same file and flags and the running targets moved to them; a settings
//! error refuses the reload and leaves the running targets as they were.
//!
//! Reloads are handled one at a time by one task, whatever asked for them, so two never race
//! over the same target.

use std::sync::Arc;

use prometheus::{Gauge, IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::fleet::Fleet;
pub use crate::http::Reloader;

/// Reads the settings again, from the same sources as at start.
pub type SettingsSource = Arc<dyn Fn() -> anyhow::Result<Settings> + Send + Sync>;

/// `ucm_exporter_config_last_reload_*`, named as Prometheus names its own.
struct ReloadMetrics {
    successful: IntGauge,
    success_time: Gauge,
}

impl ReloadMetrics {
    fn register(registry: &Registry) -> Self {
        let successful = IntGauge::new(
            "ucm_exporter_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
        )
        .expect("valid metric");
        let success_time = Gauge::new(
            "ucm_exporter_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(successful.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(success_time.clone()))
            .expect("unique metric");
        ReloadMetrics {
            successful,
            success_time,
        }
    }

    fn record(&self, ok: bool, clock: &SharedClock) {
        self.successful.set(ok as i64);
        if ok {
            self.success_time
                .set(clock.now().timestamp_millis() as f64 / 1000.0);
        }
    }
}

/// Starts the task that owns `fleet`: it reloads on request until `shutdown`, then stops every
/// target. The start counts as the first successful load, as in Prometheus.
pub fn supervise(
    mut fleet: Fleet,
    source: Option<SettingsSource>,
    registry: &Registry,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> (Reloader, tokio::task::JoinHandle<()>) {
    let metrics = ReloadMetrics::register(registry);
    metrics.record(true, &clock);
    let (reloader, mut rx) = Reloader::channel();
    let task = tokio::spawn(async move {
        loop {
            let reply = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            let result = reload(&mut fleet, source.as_ref()).await;
            metrics.record(result.is_ok(), &clock);
            let _ = reply.send(result);
        }
        fleet.stop_all().await;
    });
    (reloader, task)
}

async fn reload(fleet: &mut Fleet, source: Option<&SettingsSource>) -> Result<(), String> {
    let Some(source) = source else {
        let e = "this exporter was started from settings built in code; there is no configuration to read again";
        tracing::error!(error = e, "reload refused");
        return Err(e.into());
    };
    let source = source.clone();
    let settings = match tokio::task::spawn_blocking(move || source()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let e = format!("{e:#}");
            tracing::error!(error = %e, "reload refused: the configuration is invalid; the running targets are unchanged");
            return Err(e);
        }
        Err(e) => return Err(format!("reading the configuration failed: {e}")),
    };
    let started = std::time::Instant::now();
    match fleet.apply(&settings).await {
        Ok(c) => {
            tracing::info!(
                added = ?c.added,
                removed = ?c.removed,
                restarted = ?c.restarted,
                unchanged = c.unchanged,
                took_ms = started.elapsed().as_millis() as u64,
                "configuration reloaded"
            );
            Ok(())
        }
        Err(e) => {
            let e = format!("{e:#}");
            tracing::error!(error = %e, "reload failed");
            Err(e)
        }
    }
}

/// Reloads on every SIGHUP until the process ends (a platform without it never reloads this
/// way). The outcome is logged by the reload itself.
pub async fn on_hangup(reloader: Reloader) {
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("installing a SIGHUP handler");
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloader.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}
