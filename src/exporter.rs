//! Wires settings into running pollers and the HTTP server, and stops them together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::fleet::Fleet;
use crate::http::{self, App};
use crate::metrics::{exporter_registry, TargetMetrics};
use crate::reload::{self, Reloader, SettingsSource};
use crate::web_config::WebSecurity;

/// A running exporter: its address, the one token that stops everything, and the way to reload.
pub struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    app: Arc<App>,
    reloader: Reloader,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics of a configured target, as its pollers fill them.
    pub fn target_metrics(&self, name: &str) -> Option<Arc<TargetMetrics>> {
        self.app
            .targets
            .snapshot()
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.metrics.clone())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks for reloads, as SIGHUP and `POST /-/reload` do.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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
    source: Option<SettingsSource>,
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
            source: None,
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

    /// Where a reload reads the settings again (the same file and flags as at start). Without
    /// it, a reload is refused: the settings were built in code.
    pub fn reload_from(mut self, source: SettingsSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Starts one poller per target, the reload task and the HTTP server.
    pub async fn start(self) -> Result<Running> {
        let Exporter {
            settings,
            listen,
            telemetry_path,
            web_config,
            clock,
            source,
        } = self;
        let web = web_config.as_deref().map(WebSecurity::load).transpose()?;
        prepare_state_dir(&settings.state_dir)?;
        let shutdown = CancellationToken::new();
        let (mut fleet, pending) = Fleet::build(&settings, clock.clone(), shutdown.clone())?;
        let listener = TcpListener::bind(parse_listen(&listen)?)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let exporter = exporter_registry();
        let targets = fleet.views();
        fleet.run_started(pending);
        let (reloader, supervisor) =
            reload::supervise(fleet, source, &exporter, clock, shutdown.clone());
        let app = Arc::new(App {
            exporter,
            targets,
            telemetry_path,
            reloader: Some(reloader.clone()),
        });
        let server_app = app.clone();
        let server_shutdown = shutdown.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = http::serve(listener, server_app, web, server_shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(address = %addr, targets = settings.targets.len(), "listening");
        Ok(Running {
            addr,
            shutdown,
            tasks: vec![supervisor, server],
            app,
            reloader,
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
