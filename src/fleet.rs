//! The running set of targets: one task group per target, each under its own child token, so
//! that a reload can stop, start or restart one target without touching the others.
//!
//! The HTTP side reads the set through [`Targets`], a snapshot swapped whole: a scrape clones
//! an `Arc` under a read lock held for no longer than that, never waits on a poll or a reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::config::{Settings, Target};
use crate::http::{TargetView, Targets};
use crate::metrics::TargetMetrics;
use crate::poll::Poller;

/// Everything that decides how a target runs: its own settings and the exporter-wide ones its
/// poller and metrics are built with. Two equal keys run identically, so an unchanged key is
/// left running on reload.
#[derive(Clone, PartialEq)]
struct RunKey {
    target: Target,
    /// The CA file's contents when the key was made: a CA replaced under the same name changes
    /// the target, which the path alone would hide.
    ca_digest: Option<u64>,
    extension_pattern: String,
    extension_max: usize,
    service_levels: Vec<u64>,
}

impl RunKey {
    fn of(settings: &Settings, target: &Target) -> Self {
        RunKey {
            target: target.clone(),
            // Unreadable, it is `None`, and building the target's client says why.
            ca_digest: target
                .ca_file
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(|pem| xxhash_rust::xxh3::xxh3_64(&pem)),
            extension_pattern: settings.extension_pattern.as_str().to_string(),
            extension_max: settings.extension_max,
            service_levels: settings.service_levels.clone(),
        }
    }
}

/// One running target: its poller and live-status tasks, stopped together by `token`.
struct Group {
    key: RunKey,
    view: TargetView,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Group {
    /// Stops it as shutdown does: the poller saves its state and logs out.
    async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A target built but not yet running.
struct Built {
    key: RunKey,
    view: TargetView,
    poller: Poller,
    live: crate::live::Live,
    span: tracing::Span,
}

/// What a reload did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

/// The running targets and what they were started with.
pub struct Fleet {
    groups: BTreeMap<String, Group>,
    /// Target names in configuration order, for the HTTP side's listing.
    order: Vec<String>,
    state_dir: PathBuf,
    clock: SharedClock,
    root: CancellationToken,
    views: Arc<Targets>,
}

impl Fleet {
    /// Builds every target of `settings` (an error names the target and starts nothing). They
    /// run once [`Fleet::run_started`] is called.
    pub fn build(
        settings: &Settings,
        clock: SharedClock,
        root: CancellationToken,
    ) -> Result<(Self, Vec<Pending>)> {
        let mut built = Vec::new();
        for t in &settings.targets {
            built.push(build(RunKey::of(settings, t), &settings.state_dir, &clock)?);
        }
        let fleet = Fleet {
            groups: BTreeMap::new(),
            order: settings.targets.iter().map(|t| t.name.clone()).collect(),
            state_dir: settings.state_dir.clone(),
            clock,
            root,
            views: Arc::new(Targets::new(built.iter().map(|b| b.view.clone()).collect())),
        };
        Ok((fleet, built.into_iter().map(Pending).collect()))
    }

    /// The set the HTTP side reads.
    pub fn views(&self) -> Arc<Targets> {
        self.views.clone()
    }

    /// Starts what [`Fleet::build`] built, first polls spread over their intervals.
    pub fn run_started(&mut self, pending: Vec<Pending>) {
        self.spawn_spread(pending.into_iter().map(|p| p.0).collect());
    }

    /// Moves the running set to `settings`: removed targets stop, new ones start, changed ones
    /// restart (stop, then start on the same state file), and unchanged ones are not touched.
    /// Settings that only a restart can change are refused before anything is touched.
    pub async fn apply(&mut self, settings: &Settings) -> Result<Change> {
        if settings.state_dir != self.state_dir {
            anyhow::bail!(
                "state_dir changed from {} to {}: a reload cannot move the state of running targets; restart the exporter to use it",
                self.state_dir.display(),
                settings.state_dir.display()
            );
        }
        let wanted: BTreeMap<&str, RunKey> = settings
            .targets
            .iter()
            .map(|t| (t.name.as_str(), RunKey::of(settings, t)))
            .collect();
        let mut change = Change::default();
        let mut stopping = Vec::new();
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            match wanted.get(name.as_str()) {
                Some(key) if *key == self.groups[&name].key => change.unchanged += 1,
                Some(_) => {
                    change.restarted.push(name.clone());
                    stopping.push(self.groups.remove(&name).expect("listed"));
                }
                None => {
                    change.removed.push(name.clone());
                    stopping.push(self.groups.remove(&name).expect("listed"));
                }
            }
        }
        let old_keys: BTreeMap<String, RunKey> = stopping
            .iter()
            .map(|g| (g.key.target.name.clone(), g.key.clone()))
            .collect();
        // Stopped before anything is built again: a restarted target's poller must read the
        // state file its predecessor saved on the way out.
        futures_join_all(stopping.into_iter().map(Group::stop)).await;
        let mut starting = Vec::new();
        let mut failed = Vec::new();
        for t in &settings.targets {
            if self.groups.contains_key(&t.name) {
                continue;
            }
            if !old_keys.contains_key(&t.name) {
                change.added.push(t.name.clone());
            }
            match build(RunKey::of(settings, t), &self.state_dir, &self.clock) {
                Ok(b) => starting.push(b),
                Err(e) => {
                    // A restarted target whose new settings cannot be built runs on with its
                    // old ones; a new one does not start.
                    if let Some(old) = old_keys.get(&t.name) {
                        if let Ok(b) = build(old.clone(), &self.state_dir, &self.clock) {
                            starting.push(b);
                        }
                    }
                    failed.push(format!("{e:#}"));
                }
            }
        }
        self.order = settings.targets.iter().map(|t| t.name.clone()).collect();
        self.spawn_spread(starting);
        if !failed.is_empty() {
            anyhow::bail!("{}", failed.join("; "));
        }
        Ok(change)
    }

    /// Stops every target, as shutdown does.
    pub async fn stop_all(&mut self) {
        let groups = std::mem::take(&mut self.groups);
        futures_join_all(groups.into_values().map(Group::stop)).await;
    }

    /// Runs `built`, the first polls (and status cycles) of the batch spread over their
    /// intervals as at start, so that many targets added at once do not log in at once.
    fn spawn_spread(&mut self, built: Vec<Built>) {
        let n = built.len().max(1) as u32;
        for (i, b) in (0u32..).zip(built) {
            let phase = b.poller.poll_interval() * i / n;
            let name = b.view.name.clone();
            let group = spawn(b, phase, self.root.child_token());
            self.groups.insert(name, group);
        }
        let views = self
            .order
            .iter()
            .filter_map(|n| self.groups.get(n).map(|g| g.view.clone()))
            .collect();
        self.views.replace(views);
    }
}

/// A target built by [`Fleet::build`], not yet running.
pub struct Pending(Built);

fn build(key: RunKey, state_dir: &std::path::Path, clock: &SharedClock) -> Result<Built> {
    let target = &key.target;
    let extensions =
        crate::cdr::ExtensionPattern::new(&key.extension_pattern).context("extensions.pattern")?;
    let metrics = Arc::new(TargetMetrics::with_service_levels(
        key.extension_max,
        &key.service_levels,
    ));
    let span = tracing::info_span!("poll", ucm = %target.name);
    let poller = span
        .in_scope(|| {
            Poller::new(
                target.clone(),
                metrics.clone(),
                extensions.clone(),
                state_dir,
                clock.clone(),
            )
        })
        .with_context(|| format!("target {}", target.name))?;
    let view = TargetView {
        name: target.name.clone(),
        metrics: metrics.clone(),
        status: poller.status(),
    };
    crate::journal::attach(&span, poller.status().journal());
    let live = crate::live::Live::new(target, poller.session(), metrics, extensions, clock.clone())
        .with_ucm_clock(poller.ucm_clock());
    Ok(Built {
        key,
        view,
        poller,
        live,
        span,
    })
}

/// How long after a poll starts the live status runs: most polls are one request.
const STATUS_AFTER_POLL: Duration = Duration::from_secs(1);

fn spawn(b: Built, phase: Duration, token: CancellationToken) -> Group {
    let Built {
        key,
        view,
        poller,
        live,
        span,
    } = b;
    let status_interval = key.target.status_interval;
    // Status runs right after the poll, over the connection the poll left open (see
    // `ucm::transport::IDLE_TIMEOUT`); if the poll takes longer, its requests queue behind the
    // poll's on the session.
    let status_phase = phase + STATUS_AFTER_POLL;
    let live_span = tracing::info_span!("live", ucm = %key.target.name);
    let tasks = vec![
        tokio::spawn(
            live.run(status_interval, status_phase, token.clone())
                .instrument(live_span),
        ),
        tokio::spawn(poller.run(token.clone(), phase).instrument(span)),
    ];
    Group {
        key,
        view,
        token,
        tasks,
    }
}

/// Awaits every future, concurrently, so that stopping many targets takes as long as the
/// slowest logout rather than their sum.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// A CA file rewritten under the same name makes its target's key differ, so a reload
    /// restarts the target with the new trust; the same contents leave it running.
    #[test]
    fn a_ca_file_counts_by_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut target = Target::new("office", "https://ucm:8089", "cdrapi", Secret::new("pw"));
        target.ca_file = Some(ca.clone());
        let settings = Settings::new(dir.path(), Vec::new());
        std::fs::write(&ca, "first").unwrap();
        let before = RunKey::of(&settings, &target);
        assert!(RunKey::of(&settings, &target) == before);
        std::fs::write(&ca, "second").unwrap();
        assert!(RunKey::of(&settings, &target) != before);
        std::fs::write(&ca, "first").unwrap();
        assert!(RunKey::of(&settings, &target) == before);
    }
}
