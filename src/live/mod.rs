//! Live PBX status: what is happening now (trunks up or down, phones registered, calls in
//! progress, callers waiting, the system and its disks), next to the call counters of what
//! happened.
//!
//! Each target runs its collectors every `status_interval`, over the poller's own session, so
//! status requests queue behind CDR requests and share its login and back-offs. Each collector
//! degrades alone: an action this API user may not call (-47) or this firmware does not know
//! (an unknown action, an HTML answer) disables it for an hour, with one log line,
//! `ucm_collector_up{collector} 0` and `ucm_collector_errors_total`. A status failure never
//! touches `ucm_up` or a CDR poll's result.

mod collect;
pub mod values;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cdr::ExtensionPattern;
use crate::clock::local_secs;
use crate::clock::SharedClock;
use crate::config::{Collector, Target};
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::ucm::is_refusal;
use crate::ucm::Session;
use crate::ucm_clock::UcmClock;

pub use collect::{TrunkSource, GENERAL_MAX_AGE};

/// Every series the collectors can produce, for the dashboards' and rules' static checks;
/// `tests/live.rs` holds it to what a run against the simulator gives.
pub const METRICS: [&str; 20] = [
    "ucm_active_call_oldest_seconds",
    "ucm_active_calls",
    "ucm_active_channels",
    "ucm_boot_time_seconds",
    "ucm_clock_skew_seconds",
    "ucm_collector_errors_total",
    "ucm_collector_up",
    "ucm_extension_registered",
    "ucm_extensions",
    "ucm_group_info",
    "ucm_info",
    "ucm_queue_callers_waiting",
    "ucm_queue_longest_wait_seconds",
    "ucm_queue_members",
    "ucm_queues_skipped",
    "ucm_storage_size_bytes",
    "ucm_storage_used_bytes",
    "ucm_trunk_status",
    "ucm_trunk_up",
    "ucm_utc_offset_seconds",
];

/// How long a collector refused by the UCM rests before it is tried again: permissions and
/// firmware rarely change, but they do.
pub const RETRY_REFUSED: Duration = Duration::from_secs(3600);

/// How long the collectors rest after the UCM asked to wait, at first; each rate limit in a row
/// doubles it up to [`RATE_LIMIT_REST_MAX`]. The UCM's own wait is the least they rest, so a
/// status run never makes the CDR polls meet a rate limit it provoked.
pub const RATE_LIMIT_REST: Duration = Duration::from_secs(120);
pub const RATE_LIMIT_REST_MAX: Duration = Duration::from_secs(1800);

/// How often the names of queues, ring groups and IVRs are read again.
pub const GROUP_NAMES_INTERVAL: Duration = Duration::from_secs(3600);

/// How often the collector runs: every status interval, except group names, which change
/// when someone edits the PBX and cost three list requests.
fn every(c: Collector) -> Option<Duration> {
    match c {
        Collector::Groups => Some(GROUP_NAMES_INTERVAL),
        _ => None,
    }
}

/// The collectors of one target and what they learned of the UCM.
pub struct Live {
    session: Arc<Session>,
    metrics: Arc<TargetMetrics>,
    extensions: ExtensionPattern,
    clock: SharedClock,
    ucm_clock: Arc<UcmClock>,
    on: Vec<Collector>,
    /// Refused collectors and the monotonic time they are tried again.
    resting: BTreeMap<Collector, Duration>,
    /// Collectors that run less often than every status interval, and when they run next.
    next_run: BTreeMap<Collector, Duration>,
    trunk_source: Option<TrunkSource>,
    general: Option<collect::General>,
    /// When the UCM's time is asked for again after it gave none.
    time_rests_until: Option<Duration>,
    max_queues: usize,
    /// After a rate limit: how long the collectors rest, and the monotonic time they run again.
    rate_rest: Option<(Duration, Duration)>,
}

impl Live {
    pub fn new(
        target: &Target,
        session: Arc<Session>,
        metrics: Arc<TargetMetrics>,
        extensions: ExtensionPattern,
        clock: SharedClock,
    ) -> Self {
        let on: Vec<Collector> = target.collectors.iter().copied().collect();
        for c in &on {
            metrics.collectors.enable(c.as_str());
        }
        let ucm_clock = Arc::new(UcmClock::new(
            target,
            clock.clone(),
            metrics.clone(),
            Arc::default(),
        ));
        Live {
            session,
            metrics,
            extensions,
            clock,
            ucm_clock,
            on,
            resting: BTreeMap::new(),
            next_run: BTreeMap::new(),
            trunk_source: None,
            general: None,
            time_rests_until: None,
            max_queues: target.max_queues_per_run,
            rate_rest: None,
        }
    }

    /// Shares the poller's view of the UCM's clock, so that what the collectors read of it
    /// moves the poller's zone.
    pub fn with_ucm_clock(mut self, ucm_clock: Arc<UcmClock>) -> Self {
        self.ucm_clock = ucm_clock;
        self
    }

    /// Runs every collector that is not resting, one after the other; none while the UCM asks
    /// to wait, or the collectors rest after a rate limit. Then, for a target that follows the
    /// UCM's offset and did not just read it with the system collector, asks for the time alone.
    pub async fn run_once(&mut self) {
        if !self.may_run().await {
            return;
        }
        let mut read_time = false;
        for c in self.on.clone() {
            let now = self.clock.monotonic();
            if self.resting.get(&c).is_some_and(|until| now < *until)
                || self.next_run.get(&c).is_some_and(|at| now < *at)
            {
                continue;
            }
            let result = self.collect(c).await;
            let name = c.as_str();
            match result {
                Ok(families) => {
                    if self.resting.remove(&c).is_some() {
                        tracing::info!(collector = name, "live-status collector works again");
                    }
                    self.metrics.set_live(name, families);
                    self.metrics.collectors.set_up(name, true);
                    read_time |= c == Collector::System;
                    if let Some(every) = every(c) {
                        self.next_run.insert(c, now + every);
                    }
                }
                Err(UcmError::RateLimited { wait, .. }) => {
                    self.count_error(name, crate::error::Reason::RateLimited);
                    self.rest_after_rate_limit(now, wait);
                    return;
                }
                Err(e) => {
                    self.metrics.clear_live(name);
                    self.count_error(name, e.reason());
                    if is_refusal(&e) {
                        if !self.resting.contains_key(&c) {
                            tracing::warn!(
                                collector = name,
                                actions = c.actions(),
                                "live-status collector disabled for an hour: {e}"
                            );
                        }
                        self.resting.insert(c, now + RETRY_REFUSED);
                    } else {
                        tracing::debug!(collector = name, "live-status collector failed: {e}");
                    }
                }
            }
        }
        let now = self.clock.monotonic();
        if self.ucm_clock.follows()
            && !read_time
            && self.time_rests_until.is_none_or(|until| now >= until)
        {
            match self.ucm_clock.read(&self.session).await {
                Ok(true) => self.time_rests_until = None,
                // Refused, or no time in the answer: asked again when a refused collector is.
                Ok(false) => self.time_rests_until = Some(now + RETRY_REFUSED),
                Err(e) => tracing::debug!("cannot read the UCM's time: {e}"),
            }
        }
        self.rate_rest = None;
    }

    /// Whether the collectors may send now: not while the UCM's wait lasts, nor while they rest
    /// after a rate limit. A run that gets through ends the rest's doubling.
    async fn may_run(&mut self) -> bool {
        let now = self.clock.monotonic();
        if let Some(wait) = self.session.rate_limited().await {
            self.rest_after_rate_limit(now, wait);
            return false;
        }
        match self.rate_rest {
            Some((_, until)) if now < until => false,
            Some((rest, _)) => {
                // Rested: the next rate limit in a row doubles the rest.
                self.rate_rest = Some((rest, now));
                true
            }
            None => true,
        }
    }

    /// Rests the collectors for at least the UCM's `wait`, doubling the rest of the rate limit
    /// before.
    fn rest_after_rate_limit(&mut self, now: Duration, wait: Duration) {
        let rest = match self.rate_rest {
            Some((rest, until)) if now >= until => (rest * 2).min(RATE_LIMIT_REST_MAX),
            Some((rest, _)) => rest,
            None => RATE_LIMIT_REST,
        }
        .max(wait);
        let fresh = self.rate_rest.is_none_or(|(_, until)| now >= until);
        self.rate_rest = Some((rest, now + rest));
        if fresh {
            tracing::warn!(
                rest_seconds = rest.as_secs(),
                "the UCM asks to wait: live-status collectors rest, so that CDR polls go first"
            );
        }
    }

    fn count_error(&self, name: &'static str, reason: crate::error::Reason) {
        self.metrics.collectors.failed(name, reason);
    }

    async fn collect(&mut self, c: Collector) -> Result<Vec<crate::exposition::Encoded>, UcmError> {
        let zone = self.ucm_clock.zone();
        let cx = collect::Context {
            session: &self.session,
            metrics: &self.metrics,
            extensions: &self.extensions,
            tz: zone,
            ucm_clock: &self.ucm_clock,
            now: local_secs(self.clock.local_now(zone)),
        };
        let f = match c {
            Collector::System => {
                collect::system(&cx, &mut self.general, self.clock.monotonic()).await?
            }
            Collector::Trunks => collect::trunks(&cx, &mut self.trunk_source).await?,
            Collector::Extensions => collect::extensions(&cx).await?,
            Collector::Channels => collect::channels(&cx).await?,
            Collector::Queues => collect::queues(&cx, self.max_queues).await?,
            Collector::Groups => collect::groups(&cx).await?,
            Collector::Storage => collect::storage(&cx).await?,
        };
        Ok(f.into_encoded())
    }

    /// Runs the collectors first after `phase`, then every `interval`, until `shutdown`.
    pub async fn run(mut self, interval: Duration, phase: Duration, shutdown: CancellationToken) {
        if self.on.is_empty() && !self.ucm_clock.follows() {
            return;
        }
        let mut ticker = tokio::time::interval_at(Instant::now() + phase, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.run_once() => {}
            }
        }
    }

    /// Whether each collector works with this UCM and API user: one run of each, for `check`.
    pub async fn probe(&mut self) -> Vec<(Collector, Result<(), UcmError>)> {
        let mut out = Vec::new();
        for c in self.on.clone() {
            out.push((c, self.collect(c).await.map(|_| ())));
        }
        out
    }
}
