//! Wires settings into running pollers and the HTTP server, and stops them together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::http::{self, App, TargetView};
use crate::metrics::{exporter_registry, TargetMetrics};
use crate::poll::Poller;
use crate::web_config::WebSecurity;

/// A running exporter: its address and the one token that stops everything.
pub struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    app: Arc<App>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics of a configured target, as its pollers fill them.
    pub fn target_metrics(&self, name: &str) -> Option<Arc<TargetMetrics>> {
        self.app
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.metrics.clone())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops polling (saving state and logging out) and the HTTP server, and waits for both.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until everything has stopped after the token was cancelled.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Checks that the state dir exists (creating it) and is writable, so a mistake shows at start
/// rather than as lost state after the first poll.
fn prepare_state_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create state dir {} (set --state.dir or state_dir to a writable directory)",
            dir.display()
        )
    })?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "state dir {} is not writable (set --state.dir or state_dir to a writable directory)",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// An exporter about to start: settings, where to listen, and the clock its pollers read.
pub struct Exporter {
    settings: Settings,
    listen: String,
    telemetry_path: String,
    web_config: Option<PathBuf>,
    clock: SharedClock,
}

impl Exporter {
    /// The defaults of the command line: every interface on port 9736, `/metrics`, no TLS or
    /// authentication, the host's clock.
    pub fn new(settings: Settings) -> Self {
        Exporter {
            settings,
            listen: format!(":{}", crate::cli::DEFAULT_PORT),
            telemetry_path: "/metrics".into(),
            web_config: None,
            clock: SystemClock::shared(),
        }
    }

    pub fn listen(mut self, address: &str) -> Self {
        self.listen = address.into();
        self
    }

    pub fn telemetry_path(mut self, path: &str) -> Self {
        self.telemetry_path = path.into();
        self
    }

    /// Secures the HTTP side with a `--web.config.file` (TLS, basic auth); an invalid file is
    /// an error before anything starts.
    pub fn web_config(mut self, file: Option<&Path>) -> Self {
        self.web_config = file.map(Path::to_path_buf);
        self
    }

    /// The clock of every poller and session: tests pass the simulator's.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Starts one poller per target and the HTTP server.
    pub async fn start(self) -> Result<Running> {
        let Exporter {
            settings,
            listen,
            telemetry_path,
            web_config,
            clock,
        } = self;
        let web = web_config.as_deref().map(WebSecurity::load).transpose()?;
        prepare_state_dir(&settings.state_dir)?;
        let extensions = &settings.extension_pattern;
        let shutdown = CancellationToken::new();
        let mut views = Vec::new();
        let mut pollers = Vec::new();
        for target in &settings.targets {
            let metrics = Arc::new(TargetMetrics::with_service_levels(
                settings.extension_max,
                &settings.service_levels,
            ));
            let span = tracing::info_span!("poll", ucm = %target.name);
            let poller = span
                .in_scope(|| {
                    Poller::new(
                        target.clone(),
                        metrics.clone(),
                        extensions.clone(),
                        &settings.state_dir,
                        clock.clone(),
                    )
                })
                .with_context(|| format!("target {}", target.name))?;
            views.push(TargetView {
                name: target.name.clone(),
                metrics,
                status: poller.status(),
            });
            crate::journal::attach(&span, poller.status().journal());
            let live = crate::live::Live::new(
                target,
                poller.session(),
                views.last().expect("just pushed").metrics.clone(),
                extensions.clone(),
                clock.clone(),
            )
            .with_ucm_clock(poller.ucm_clock());
            pollers.push((poller, live, span));
        }
        let listener = TcpListener::bind(parse_listen(&listen)?)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            exporter: exporter_registry(),
            targets: views,
            telemetry_path,
        });
        let mut tasks = Vec::new();
        let n = pollers.len() as u32;
        for (i, (poller, live, span)) in (0u32..).zip(pollers) {
            let phase = poller.poll_interval() * i / n;
            let status_interval = poller.target().status_interval;
            // Status runs half an interval after the poll, so the two rarely queue for the
            // session at once.
            let status_phase = phase + status_interval / 2;
            let live_span = tracing::info_span!("live", ucm = %poller.name());
            tasks.push(tokio::spawn(
                live.run(status_interval, status_phase, shutdown.clone())
                    .instrument(live_span),
            ));
            tasks.push(tokio::spawn(
                poller.run(shutdown.clone(), phase).instrument(span),
            ));
        }
        let server_app = app.clone();
        let server_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, server_app, web, server_shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
        tracing::info!(address = %addr, targets = settings.targets.len(), "listening");
        Ok(Running {
            addr,
            shutdown,
            tasks,
            app,
        })
    }
}

/// Accepts Prometheus-style addresses: `:9736` means every interface.
pub fn parse_listen(listen: &str) -> Result<SocketAddr> {
    let full = if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    };
    if let Ok(a) = full.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    full.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .with_context(|| format!("--web.listen-address {listen:?} is not HOST:PORT"))
}

/// Resolves on SIGTERM or Ctrl-C, the one signal that stops the exporter.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
