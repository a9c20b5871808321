//! The metrics of one target, and of the exporter itself.
//!
//! Each target owns its registries, so `/probe?target=` shows exactly that target and nothing the
//! scrape could influence. Poll results arrive as a [`CallTally`] and are applied in one step,
//! after the poll state that implies them has been written (see `poller`).
//!
//! A target's series live in two registries. The call series (tens of thousands with many
//! extensions) change only when a tally is applied or a trunk appears, so they are encoded right
//! then and every scrape until the next change serves that encoding (see `exposition`). The poll
//! health series change at any time, from the poller and the session, but are few: a scrape
//! encodes them itself.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use foldhash::HashMap;

use prometheus::{Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::counter::IntCounterVec;

use crate::cdr::{
    Direction, Disposition, GroupKind, GroupOutcome, IvrOutcome, MemberOutcome, Role, Skip,
};
use crate::collector_health::Health;
use crate::config::DEFAULT_SERVICE_LEVELS;
use crate::error::Reason;
use crate::exposition::{self, Encoded, Prepared, TextFamily};
use crate::histogram::IntHistogramVec;
use crate::series::SeriesValues;

pub const TALK_BUCKETS: [f64; 10] = [5., 15., 30., 60., 120., 300., 600., 1200., 1800., 3600.];
pub const WAIT_BUCKETS: [f64; 11] = [1., 2., 5., 10., 15., 20., 30., 45., 60., 120., 300.];
/// Buckets of `ucm_group_wait_seconds` before the configured service levels are added: a queue's
/// waits run from seconds to minutes.
pub const GROUP_WAIT_BUCKETS: [f64; 12] = [
    5., 10., 15., 20., 30., 45., 60., 90., 120., 180., 300., 600.,
];
/// Queues, ring groups and IVRs per target with their own label value; past it, `other`. A PBX
/// has a handful; the cap only guards against a garbled `action_type`.
pub const MAX_GROUPS: usize = 200;
/// The label value that stands for every group past [`MAX_GROUPS`].
pub const OTHER_GROUP: &str = "other";
/// API actions whose request counters exist from the start.
pub const ACTIONS: [&str; 4] = ["challenge", "login", "cdrapi", "logout"];
/// The values of `ucm_cdr_window_mode`'s `mode` label.
const WINDOW_MODES: [&str; 3] = ["end", "channels", "start"];
/// The label value that stands for every extension past `extensions.max`.
pub const OTHER_EXTENSION: &str = "other";

/// Increments that one poll (or one chunk of a long catch-up) implies, held back until the poll
/// state is persisted. Extensions are kept as reported; the cap is applied when the tally is.
///
/// [`CallTally::add_call`] runs once per new call, so it keeps counts under interned label values:
/// a trunk or extension string is copied once per tally, not once per call.
#[derive(Debug, Default)]
pub struct CallTally {
    pub records: u64,
    /// New legs a safety sweep found that the fast window mode should have read earlier.
    pub late_records: u64,
    /// Entries served but not counted, by [`Skip`] as index.
    pub skipped: [u64; Skip::ALL.len()],
    /// Unix time of the newest call start in the tally.
    pub newest_start: Option<i64>,
    names: Interner,
    call_counts: HashMap<(Direction, Name, Disposition), u64>,
    talk_seconds: Vec<(Direction, Name, u64)>,
    wait_seconds: Vec<(Direction, Name, Disposition, u64)>,
    extension_call_counts: HashMap<(Name, Role, Disposition), u64>,
    extension_talk_seconds: HashMap<(Name, Role), u64>,
    group_counts: HashMap<(GroupKind, Name, GroupOutcome), u64>,
    group_waits: Vec<(GroupKind, Name, GroupOutcome, u64)>,
    /// (kind, group, extension, outcome)
    member_counts: HashMap<(GroupKind, Name, Name, MemberOutcome), u64>,
    ivr_counts: HashMap<(Name, IvrOutcome), u64>,
}

/// An interned label value of one tally.
type Name = u32;

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, Name>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> Name {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Name::try_from(self.names.len()).expect("fewer than 2^32 label values");
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn name(&self, id: Name) -> &str {
        &self.names[id as usize]
    }
}

impl CallTally {
    /// True when applying the tally would change no series.
    pub fn is_empty(&self) -> bool {
        self.records == 0
            && self.late_records == 0
            && self.skipped == [0; Skip::ALL.len()]
            && self.newest_start.is_none()
            && self.call_counts.is_empty()
            && self.talk_seconds.is_empty()
            && self.wait_seconds.is_empty()
            && self.extension_call_counts.is_empty()
            && self.extension_talk_seconds.is_empty()
            && self.group_counts.is_empty()
            && self.group_waits.is_empty()
            && self.member_counts.is_empty()
            && self.ivr_counts.is_empty()
    }

    pub fn call_count(&self) -> u64 {
        self.call_counts.values().sum()
    }

    /// Counts calls of one extension without a classified call; for tests and benchmarks that
    /// need extension series.
    pub fn add_extension_calls(&mut self, ext: &str, role: Role, disp: Disposition, n: u64) {
        let ext = self.names.id(ext);
        *self
            .extension_call_counts
            .entry((ext, role, disp))
            .or_default() += n;
    }

    pub fn add_extension_talk(&mut self, ext: &str, role: Role, secs: u64) {
        let ext = self.names.id(ext);
        *self.extension_talk_seconds.entry((ext, role)).or_default() += secs;
    }

    /// Adds one classified call.
    pub fn add_call(&mut self, call: &crate::cdr::Call<'_>, start_unix: Option<i64>) {
        let trunk = self.names.id(call.trunk);
        *self
            .call_counts
            .entry((call.direction, trunk, call.disposition))
            .or_default() += 1;
        if call.disposition == Disposition::Answered {
            self.talk_seconds
                .push((call.direction, trunk, call.talk_seconds));
        }
        self.wait_seconds
            .push((call.direction, trunk, call.disposition, call.wait_seconds));
        if let Some(caller) = call.caller {
            let ext = self.names.id(caller);
            *self
                .extension_call_counts
                .entry((ext, Role::Caller, call.disposition))
                .or_default() += 1;
        }
        for (ext, outcome) in &call.callees {
            let ext = self.names.id(ext);
            *self
                .extension_call_counts
                .entry((ext, Role::Callee, *outcome))
                .or_default() += 1;
        }
        for (ext, role, secs) in &call.extension_talk {
            let ext = self.names.id(ext);
            *self.extension_talk_seconds.entry((ext, *role)).or_default() += secs;
        }
        for v in &call.groups {
            let group = self.names.id(v.group);
            *self
                .group_counts
                .entry((v.kind, group, v.outcome))
                .or_default() += 1;
            self.group_waits
                .push((v.kind, group, v.outcome, v.wait_seconds));
            for (ext, outcome) in &v.members {
                let ext = self.names.id(ext);
                *self
                    .member_counts
                    .entry((v.kind, group, ext, *outcome))
                    .or_default() += 1;
            }
        }
        for i in &call.ivrs {
            let ivr = self.names.id(i.ivr);
            *self.ivr_counts.entry((ivr, i.outcome)).or_default() += 1;
        }
        if let Some(ts) = start_unix {
            self.newest_start = Some(self.newest_start.map_or(ts, |n| n.max(ts)));
        }
    }
}

/// Maps extension numbers to label values, bounded by `extensions.max` so that a misconfigured
/// pattern cannot blow up the series count.
#[derive(Debug)]
struct ExtensionLabels {
    known: HashSet<String>,
    max: usize,
}

impl ExtensionLabels {
    fn label<'a>(&mut self, ext: &'a str) -> &'a str {
        if self.known.contains(ext) {
            return ext;
        }
        if self.known.len() < self.max {
            self.known.insert(ext.to_string());
            return ext;
        }
        OTHER_EXTENSION
    }
}

pub struct TargetMetrics {
    /// Poll health: few series, set from anywhere at any time, encoded by each scrape.
    status: Registry,
    pub up: IntGauge,
    pub poll_duration: Gauge,
    pub last_success: Gauge,
    /// When the call series last started from zero: a new baseline, or a lost state file.
    pub counters_reset: Gauge,
    /// When this process took the call series up from the state file; 0 if it did not.
    pub counters_restored: Gauge,
    pub poll_errors: IntCounterVec,
    pub logins: IntCounter,
    pub login_failures: IntCounter,
    pub api_requests: IntCounterVec,
    /// Requests not sent because the target's budget was spent, by scope (`poll`, `hour`).
    pub budget_exhausted: IntCounterVec,
    /// Requests the last poll sent, and what it was allowed (docs/design.md §2.5).
    pub poll_requests: IntGauge,
    pub poll_request_budget: IntGauge,
    window_mode: IntGaugeVec,
    /// When a target whose fast window modes missed calls examines them again; 0 without a
    /// fallback.
    pub window_fallback_until: Gauge,
    /// The UTC offset the UCM reports (`source="ucm"`) and the one its CDR times are read in
    /// (`source="exporter"`); see `ucm_clock.rs`.
    pub utc_offset: IntGaugeVec,
    /// The UCM's clock minus this host's, as of its last `system-time`; no series before.
    pub clock_skew: IntGaugeVec,
    /// Whether each live-status collector's last run succeeded, and why runs failed.
    pub collectors: Health,
    /// The live-status series of each collector as its last run left them, encoded, replaced
    /// whole so a scrape never sees half a run (docs/design.md §9).
    live: RwLock<BTreeMap<&'static str, Vec<Encoded>>>,
    /// Call series, sorted by name: changed only by [`Self::apply`] and [`Self::add_trunk`],
    /// which publish them.
    call_families: Vec<Box<dyn TextFamily>>,
    cdr_records: IntCounter,
    cdr_late_records: IntCounter,
    cdr_skipped: IntCounterVec,
    last_record: Gauge,
    calls: IntCounterVec,
    talk: IntHistogramVec,
    wait: IntHistogramVec,
    extension_calls: IntCounterVec,
    extension_talk: IntCounterVec,
    extensions: Mutex<ExtensionLabels>,
    trunks: Mutex<HashSet<String>>,
    group_calls: IntCounterVec,
    group_wait: IntHistogramVec,
    group_members: IntCounterVec,
    ivr_calls: IntCounterVec,
    /// Groups with their own label value (and zero series), at most [`MAX_GROUPS`].
    groups: Mutex<HashSet<(GroupKind, String)>>,
    /// The call series as last published. Scrapes only clone the `Arc`, so they never wait for
    /// an encoding: while one runs they serve the state before it.
    prepared: RwLock<Arc<Prepared>>,
    /// Held from gathering to storing, so a publication that gathered earlier cannot replace
    /// one that gathered later.
    publishing: Mutex<()>,
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(name, help, labels);
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// A call series family, published as text (see [`Prepared`]).
fn call_family<F: TextFamily + Clone + 'static>(
    families: &mut Vec<Box<dyn TextFamily>>,
    f: F,
) -> F {
    families.push(Box::new(f.clone()));
    f
}

impl TargetMetrics {
    /// With the default service levels.
    pub fn new(extension_max: usize) -> Self {
        Self::with_service_levels(extension_max, &DEFAULT_SERVICE_LEVELS)
    }

    /// `service_levels` (seconds) become buckets of `ucm_group_wait_seconds`, so that "answered
    /// within N s" is one `_bucket` series over `_count`.
    pub fn with_service_levels(extension_max: usize, service_levels: &[u64]) -> Self {
        let status = Registry::new();
        let mut call_families: Vec<Box<dyn TextFamily>> = Vec::new();
        macro_rules! reg {
            ($registry:expr, $m:expr) => {{
                let m = $m.expect("valid metric");
                $registry
                    .register(Box::new(m.clone()))
                    .expect("unique metric");
                m
            }};
        }
        let up = reg!(
            status,
            IntGauge::new(
                "ucm_up",
                "1 if the last poll of this UCM (login and CDR query) succeeded, else 0."
            )
        );
        let poll_duration = reg!(
            status,
            Gauge::new(
                "ucm_poll_duration_seconds",
                "Wall time of the last poll of this UCM."
            )
        );
        let last_success = reg!(
            status,
            Gauge::new(
                "ucm_last_poll_success_timestamp_seconds",
                "Unix time of the last successful poll."
            )
        );
        let counters_reset = reg!(
            status,
            Gauge::new(
                "ucm_cdr_counters_reset_timestamp_seconds",
                "Unix time the call series of this UCM last started from zero: its first start, \
                 or a state file that was lost or unusable. Kept in the state file."
            )
        );
        let counters_restored = reg!(
            status,
            Gauge::new(
                "ucm_cdr_counters_restored_timestamp_seconds",
                "Unix time this process took the call series up from the state file, where they \
                 continue; 0 if they started from zero."
            )
        );
        let logins = reg!(
            status,
            IntCounter::new("ucm_logins_total", "Login attempts.")
        );
        let login_failures = reg!(
            status,
            IntCounter::new("ucm_login_failures_total", "Login attempts that failed.")
        );
        let cdr_records = call_family(&mut call_families, IntCounter::new(
            "ucm_cdr_records_total",
            "New CDR legs ingested, after de-duplication (ForkCDR copies and main_cdr summaries excluded)."
        ).expect("valid metric"));
        let cdr_late_records = call_family(&mut call_families, IntCounter::new(
            "ucm_cdr_late_records_total",
            "CDR legs that a safety sweep found and the fast window mode (end or channels) had missed: \
             counted when found. Any increase makes the target fall back to start windows."
        ).expect("valid metric"));
        let window_mode = IntGaugeVec::new(
            Opts::new(
                "ucm_cdr_window_mode",
                "1 for the CDR window mode this target's polls use: end (filtered on call end), \
                 channels (bounded by the live channel lists) or start (fixed overlap and sweeps).",
            ),
            &["mode"],
        )
        .expect("valid metric");
        status
            .register(Box::new(window_mode.clone()))
            .expect("unique metric");
        for m in WINDOW_MODES {
            window_mode
                .with_label_values(&[m])
                .set(i64::from(m == "start"));
        }
        let window_fallback_until = Gauge::new(
            "ucm_cdr_window_fallback_until_timestamp_seconds",
            "When this target, which fell back to start windows because a safety sweep found \
             calls the fast window modes had missed, examines the fast modes again; 0 without a \
             fallback.",
        )
        .expect("valid metric");
        status
            .register(Box::new(window_fallback_until.clone()))
            .expect("unique metric");
        let utc_offset = IntGaugeVec::new(
            Opts::new(
                "ucm_utc_offset_seconds",
                "Seconds east of UTC: the offset the UCM reports in getSystemStatus (source=\"ucm\"), \
                 and the one this exporter reads the UCM's CDR times in (source=\"exporter\": the \
                 configured timezone, or the UCM's own when none is set).",
            ),
            &["source"],
        )
        .expect("valid metric");
        status
            .register(Box::new(utc_offset.clone()))
            .expect("unique metric");
        let clock_skew = IntGaugeVec::new(
            Opts::new(
                "ucm_clock_skew_seconds",
                "The UCM's clock minus this exporter host's, from the UCM's last system-time \
                 (getSystemStatus); its sign says which runs ahead.",
            ),
            &[],
        )
        .expect("valid metric");
        status
            .register(Box::new(clock_skew.clone()))
            .expect("unique metric");
        let cdr_skipped = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_cdr_skipped_total",
            "CDR entries served by the UCM but not counted, by reason: no_legs (a summary without \
             legs), bad_start (a start time that does not parse), too_old (older than \
             every window still tracked). Each entry counts once while it is within reach.",
            &["reason"],
            ),
        );
        for s in Skip::ALL {
            cdr_skipped.touch(&[s.as_str()]);
        }
        let last_record = call_family(
            &mut call_families,
            Gauge::new(
                "ucm_cdr_last_record_timestamp_seconds",
                "Start time (Unix) of the newest call ingested.",
            )
            .expect("valid metric"),
        );
        let poll_errors = counter_vec(
            &status,
            "ucm_poll_errors_total",
            "Failed polls by reason.",
            &["reason"],
        );
        let api_requests = counter_vec(
            &status,
            "ucm_api_requests_total",
            "Requests sent to the UCM, by API action.",
            &["action"],
        );
        let budget_exhausted = counter_vec(
            &status,
            "ucm_request_budget_exhausted_total",
            "Requests not sent because the target's request budget was spent: scope poll (what the poll's plan needs \
             plus a margin) or hour (max_requests_per_hour, shared with the live-status collectors).",
            &["scope"],
        );
        for s in crate::ucm::budget::Scope::ALL {
            budget_exhausted.touch(&[s.as_str()]);
        }
        let poll_requests = reg!(
            status,
            IntGauge::new(
                "ucm_poll_requests",
                "Requests the last poll sent to the UCM, logins included."
            )
        );
        let poll_request_budget = reg!(
            status,
            IntGauge::new(
                "ucm_poll_request_budget",
                "Requests the last poll was allowed: what its plan was expected to need plus a margin."
            )
        );
        let calls = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_calls_total",
            "Calls (one per cdr_root entry), counted once, by direction, trunk and disposition.",
            &["direction", "trunk", "disposition"],
            ),
        );
        let talk = call_family(
            &mut call_families,
            IntHistogramVec::new(
                "ucm_call_talk_seconds",
                "Talk time of answered calls: billsec summed over the legs a person answered.",
                &["direction", "trunk"],
                &TALK_BUCKETS,
            ),
        );
        let wait = call_family(
            &mut call_families,
            IntHistogramVec::new(
                "ucm_call_wait_seconds",
                "How long the caller waited: until a person answered, or until the call ended.",
                &["direction", "trunk", "disposition"],
                &WAIT_BUCKETS,
            ),
        );
        let extension_calls = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_extension_calls_total",
            "Calls per local extension: placed (role=caller, call outcome) or rung (role=callee, the extension's best outcome).",
            &["extension", "role", "disposition"],
            ),
        );
        let extension_talk = call_family(
            &mut call_families,
            IntCounterVec::new(
                "ucm_extension_talk_seconds_total",
                "Talk seconds of person-answered legs the extension took part in.",
                &["extension", "role"],
            ),
        );
        let mut group_buckets: Vec<f64> = GROUP_WAIT_BUCKETS.to_vec();
        group_buckets.extend(service_levels.iter().map(|&s| s as f64));
        group_buckets.sort_by(f64::total_cmp);
        group_buckets.dedup();
        let group_calls = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_group_calls_total",
            "Calls that passed a queue or ring group, once per group per call, by what happened there: \
             answered (by a person), voicemail, timeout (the call went on elsewhere), abandoned (it ended there).",
            &["kind", "group", "outcome"],
            ),
        );
        let group_wait = call_family(
            &mut call_families,
            IntHistogramVec::new(
            "ucm_group_wait_seconds",
            "Seconds from entering a queue or ring group until a person answered, or until the call left it. \
             The configured service levels are buckets.",
            &["kind", "group", "outcome"],
            &group_buckets,
            ),
        );
        let group_members = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_group_member_calls_total",
            "Calls a queue or ring group rang a member extension with, once per call: answered or missed.",
            &["kind", "group", "extension", "outcome"],
            ),
        );
        let ivr_calls = call_family(
            &mut call_families,
            IntCounterVec::new(
            "ucm_ivr_calls_total",
            "Calls that passed an IVR menu, once per menu per call: routed (sent on), hangup (the caller \
             hung up in the menu), timeout (the menu ended the call).",
            &["ivr", "outcome"],
            ),
        );
        for r in Reason::ALL.map(Reason::as_str) {
            poll_errors.touch(&[r]);
        }
        for a in ACTIONS {
            api_requests.touch(&[a]);
        }
        call_families.sort_by(|a, b| a.name().cmp(b.name()));
        // What a registry refused: the text format allows each family once.
        debug_assert!(call_families.windows(2).all(|w| w[0].name() < w[1].name()));
        let m = TargetMetrics {
            status,
            up,
            poll_duration,
            last_success,
            counters_reset,
            counters_restored,
            poll_errors,
            logins,
            login_failures,
            api_requests,
            budget_exhausted,
            poll_requests,
            poll_request_budget,
            window_mode,
            window_fallback_until,
            utc_offset,
            clock_skew,
            collectors: Health::default(),
            live: RwLock::default(),
            call_families,
            cdr_records,
            cdr_late_records,
            cdr_skipped,
            last_record,
            calls,
            talk,
            wait,
            extension_calls,
            extension_talk,
            extensions: Mutex::new(ExtensionLabels {
                known: HashSet::new(),
                max: extension_max,
            }),
            trunks: Mutex::new(HashSet::new()),
            group_calls,
            group_wait,
            group_members,
            ivr_calls,
            groups: Mutex::new(HashSet::new()),
            prepared: RwLock::new(Arc::new(Prepared::new(&[]))),
            publishing: Mutex::new(()),
        };
        m.add_trunks([""]);
        m
    }

    /// Creates the zero-valued call series of a trunk so `increase()` sees its first call.
    pub fn add_trunk(&self, trunk: &str) {
        self.add_trunks([trunk]);
    }

    /// As [`Self::add_trunk`] for several, publishing once: each publication re-encodes every
    /// call series.
    pub fn add_trunks<S: AsRef<str>>(&self, trunks: impl IntoIterator<Item = S>) {
        let mut added = false;
        for t in trunks {
            added |= self.create_trunk_series(t.as_ref());
        }
        if added {
            self.publish();
        }
    }

    /// The zero series of a trunk not seen before, unpublished; false if it was known.
    fn create_trunk_series(&self, trunk: &str) -> bool {
        if !self
            .trunks
            .lock()
            .expect("not poisoned")
            .insert(trunk.to_string())
        {
            return false;
        }
        for dir in Direction::ALL {
            // An internal call never has a trunk; a trunk series for it would be noise.
            if dir == Direction::Internal && !trunk.is_empty() {
                continue;
            }
            self.talk.touch(&[dir.as_str(), trunk]);
            for disp in Disposition::ALL {
                self.calls.touch(&[dir.as_str(), trunk, disp.as_str()]);
                self.wait.touch(&[dir.as_str(), trunk, disp.as_str()]);
            }
        }
        true
    }

    /// Creates the zero series of groups the UCM lists, so `increase()` sees a new queue's first
    /// abandoned call.
    pub fn add_groups<'a>(&self, groups: impl IntoIterator<Item = (GroupKind, &'a str)>) {
        let mut known = self.groups.lock().expect("not poisoned");
        let before = known.len();
        for (kind, group) in groups {
            self.group_label(&mut known, kind, group);
        }
        let added = known.len() > before;
        drop(known);
        if added {
            self.publish();
        }
    }

    /// The label value of a group, creating its zero series the first time; past [`MAX_GROUPS`],
    /// [`OTHER_GROUP`] (whose series are created as any other group's).
    fn group_label<'a>(
        &self,
        known: &mut HashSet<(GroupKind, String)>,
        kind: GroupKind,
        group: &'a str,
    ) -> &'a str {
        if known.contains(&(kind, group.to_string())) {
            return group;
        }
        let label = if known.len() < MAX_GROUPS {
            group
        } else {
            OTHER_GROUP
        };
        if known.insert((kind, label.to_string())) {
            self.create_group_series(kind, label);
        }
        label
    }

    fn create_group_series(&self, kind: GroupKind, label: &str) {
        if kind == GroupKind::Ivr {
            for o in IvrOutcome::ALL {
                self.ivr_calls.touch(&[label, o.as_str()]);
            }
        } else {
            for o in GroupOutcome::ALL {
                let l = [kind.as_str(), label, o.as_str()];
                self.group_calls.touch(&l);
                self.group_wait.touch(&l);
            }
        }
    }

    pub fn trunks(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .trunks
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Shows which window mode the target's polls use now.
    pub fn set_window_mode(&self, mode: &str) {
        for m in WINDOW_MODES {
            self.window_mode
                .with_label_values(&[m])
                .set(i64::from(m == mode));
        }
    }

    /// Applies a tally and publishes the result: [`Self::resolve`], then [`Self::add`].
    pub fn apply(&self, tally: &CallTally) {
        self.add(&self.resolve(tally));
    }

    /// The increments a tally makes to the call series, under the label values it gets here
    /// (extensions and groups past their caps become `other`), to be kept in the state file
    /// before [`Self::add`] shows them. New trunks and groups get their zero series now.
    pub fn resolve(&self, tally: &CallTally) -> SeriesValues {
        let mut v = SeriesValues::default();
        if tally.is_empty() {
            return v;
        }
        if tally.records > 0 {
            v.count("ucm_cdr_records_total", &[], tally.records);
        }
        if tally.late_records > 0 {
            v.count("ucm_cdr_late_records_total", &[], tally.late_records);
        }
        for (s, n) in Skip::ALL.iter().zip(tally.skipped) {
            if n > 0 {
                v.count("ucm_cdr_skipped_total", &[s.as_str()], n);
            }
        }
        for ((dir, trunk, disp), n) in &tally.call_counts {
            let trunk = tally.names.name(*trunk);
            let labels = [dir.as_str(), trunk, disp.as_str()];
            v.count("ucm_calls_total", &labels, *n);
        }
        for (dir, trunk, secs) in &tally.talk_seconds {
            let labels = [dir.as_str(), tally.names.name(*trunk)];
            v.observe("ucm_call_talk_seconds", self.talk.bounds(), &labels, *secs);
        }
        for (dir, trunk, disp, secs) in &tally.wait_seconds {
            let labels = [dir.as_str(), tally.names.name(*trunk), disp.as_str()];
            v.observe("ucm_call_wait_seconds", self.wait.bounds(), &labels, *secs);
        }
        self.resolve_groups(tally, &mut v);
        let mut exts = self.extensions.lock().expect("not poisoned");
        // Sorted, so that which extensions fall past `extensions.max` into "other" does not
        // depend on hash order.
        let mut ext_calls: Vec<(&str, Role, Disposition, u64)> = tally
            .extension_call_counts
            .iter()
            .map(|((e, r, d), n)| (tally.names.name(*e), *r, *d, *n))
            .collect();
        ext_calls.sort_unstable();
        for (ext, role, disp, n) in ext_calls {
            let labels = [exts.label(ext), role.as_str(), disp.as_str()];
            v.count("ucm_extension_calls_total", &labels, n);
        }
        let mut ext_talk: Vec<(&str, Role, u64)> = tally
            .extension_talk_seconds
            .iter()
            .map(|((e, r), s)| (tally.names.name(*e), *r, *s))
            .collect();
        ext_talk.sort_unstable();
        for (ext, role, secs) in ext_talk {
            let labels = [exts.label(ext), role.as_str()];
            v.count("ucm_extension_talk_seconds_total", &labels, secs);
        }
        v.last_record = tally.newest_start;
        v
    }

    fn resolve_groups(&self, tally: &CallTally, v: &mut SeriesValues) {
        let mut known = self.groups.lock().expect("not poisoned");
        // Sorted, so that which groups fall past the cap does not depend on hash order.
        let mut counts: Vec<_> = tally.group_counts.iter().collect();
        counts.sort_unstable();
        for ((kind, group, outcome), n) in counts {
            let group = self.group_label(&mut known, *kind, tally.names.name(*group));
            let labels = [kind.as_str(), group, outcome.as_str()];
            v.count("ucm_group_calls_total", &labels, *n);
        }
        let bounds = self.group_wait.bounds();
        for (kind, group, outcome, secs) in &tally.group_waits {
            let group = self.group_label(&mut known, *kind, tally.names.name(*group));
            let labels = [kind.as_str(), group, outcome.as_str()];
            v.observe("ucm_group_wait_seconds", bounds, &labels, *secs);
        }
        let mut ivrs: Vec<_> = tally.ivr_counts.iter().collect();
        ivrs.sort_unstable();
        for ((ivr, outcome), n) in ivrs {
            let ivr = self.group_label(&mut known, GroupKind::Ivr, tally.names.name(*ivr));
            v.count("ucm_ivr_calls_total", &[ivr, outcome.as_str()], *n);
        }
        let mut members: Vec<_> = tally
            .member_counts
            .iter()
            .map(|((k, g, e, o), n)| (*k, tally.names.name(*g), tally.names.name(*e), *o, *n))
            .collect();
        members.sort_unstable();
        // Lock order: groups, then extensions.
        let mut exts = self.extensions.lock().expect("not poisoned");
        for (kind, group, ext, outcome, n) in members {
            let group = self.group_label(&mut known, kind, group);
            let labels = [kind.as_str(), group, exts.label(ext), outcome.as_str()];
            v.count("ucm_group_member_calls_total", &labels, n);
        }
    }

    /// The counter vector of a call series family, if it has labels.
    fn counter_vec(&self, family: &str) -> Option<&IntCounterVec> {
        Some(match family {
            "ucm_cdr_skipped_total" => &self.cdr_skipped,
            "ucm_calls_total" => &self.calls,
            "ucm_extension_calls_total" => &self.extension_calls,
            "ucm_extension_talk_seconds_total" => &self.extension_talk,
            "ucm_group_calls_total" => &self.group_calls,
            "ucm_group_member_calls_total" => &self.group_members,
            "ucm_ivr_calls_total" => &self.ivr_calls,
            _ => return None,
        })
    }

    fn histogram_vec(&self, family: &str) -> Option<&IntHistogramVec> {
        [&self.talk, &self.wait, &self.group_wait]
            .into_iter()
            .find(|h| h.name() == family)
    }

    /// Adds increments (from [`Self::resolve`], or restored values) to the call series and
    /// publishes them; nothing to add costs nothing. The values must have passed
    /// [`Self::check`].
    pub fn add(&self, v: &SeriesValues) {
        if v.is_empty() {
            return;
        }
        for (family, series) in &v.counters {
            for (labels, n) in &series.0 {
                let labels = labels.to_vec();
                match family.as_str() {
                    "ucm_cdr_records_total" => self.cdr_records.inc_by(*n),
                    "ucm_cdr_late_records_total" => self.cdr_late_records.inc_by(*n),
                    "ucm_calls_total" => {
                        self.create_trunk_series(labels[1]);
                        self.calls.inc_by(&labels, *n);
                    }
                    f => {
                        if let Some(c) = self.counter_vec(f) {
                            c.inc_by(&labels, *n);
                        }
                    }
                }
            }
        }
        for (family, h) in &v.histograms {
            let Some(vec) = self.histogram_vec(family) else {
                continue;
            };
            for (labels, value) in &h.series.0 {
                let labels = labels.to_vec();
                vec.add(&labels, value);
            }
        }
        if let Some(ts) = v.last_record {
            if ts as f64 > self.last_record.get() {
                self.last_record.set(ts as f64);
            }
        }
        self.publish();
    }

    /// Whether saved values fit these series: known families, as many label values as each
    /// has, and buckets as configured. A histogram family whose buckets changed (other
    /// `groups.service_level_seconds`) cannot continue; it is named in `Ok` and must be dropped
    /// from the values before they are added. Anything else is an `Err`.
    pub fn check(&self, v: &SeriesValues) -> Result<Vec<String>, String> {
        for (family, series) in &v.counters {
            for labels in series.0.keys() {
                let l = labels.to_vec();
                let fits = match family.as_str() {
                    "ucm_cdr_records_total" | "ucm_cdr_late_records_total" => l.is_empty(),
                    f => {
                        self.counter_vec(f)
                            .ok_or_else(|| format!("unknown counter {f}"))?
                            .label_count()
                            == l.len()
                    }
                };
                if !fits {
                    return Err(format!("{family} with label values {labels:?}"));
                }
            }
        }
        let mut changed = Vec::new();
        for (family, h) in &v.histograms {
            let vec = self
                .histogram_vec(family)
                .ok_or_else(|| format!("unknown histogram {family}"))?;
            for (labels, value) in &h.series.0 {
                if labels.len() != vec.label_count() || value.buckets.len() != h.le.len() {
                    return Err(format!("{family} with label values {labels:?}"));
                }
            }
            if h.le != vec.bounds() {
                changed.push(family.clone());
            }
        }
        Ok(changed)
    }

    /// Adds saved values to the zero series at start, with the extensions and groups they name
    /// known again, so that the caps keep mapping the same values to `other`.
    pub fn restore(&self, v: &SeriesValues) {
        let mut groups = self.groups.lock().expect("not poisoned");
        let mut exts = self.extensions.lock().expect("not poisoned");
        let mut group = |kind: Option<GroupKind>, label: &str| {
            if let Some(kind) = kind {
                if groups.insert((kind, label.to_string())) {
                    self.create_group_series(kind, label);
                }
            }
        };
        for (family, series) in &v.counters {
            for l in series.0.keys() {
                match (family.as_str(), l.to_vec().as_slice()) {
                    ("ucm_extension_calls_total" | "ucm_extension_talk_seconds_total", [e, ..]) => {
                        exts.known.insert(e.to_string());
                    }
                    ("ucm_group_calls_total", [k, g, _]) => group(GroupKind::parse(k), g),
                    ("ucm_group_member_calls_total", [k, g, e, _]) => {
                        group(GroupKind::parse(k), g);
                        exts.known.insert(e.to_string());
                    }
                    ("ucm_ivr_calls_total", [g, _]) => group(Some(GroupKind::Ivr), g),
                    _ => {}
                }
            }
        }
        exts.known.remove(OTHER_EXTENSION);
        drop((groups, exts));
        self.add(v);
    }

    /// Encodes the call series as they are now for the scrapes to come. [`Self::apply`] and
    /// [`Self::add_trunk`] call it; public so that benchmarks can time it.
    ///
    /// With many extensions this takes tens of milliseconds. Called from a task of a
    /// multi-threaded runtime (the poller's), it first hands the worker thread's other tasks
    /// (scrapes among them) to another thread, so that they do not wait for it.
    pub fn publish(&self) {
        let publish = || {
            let _one_at_a_time = self.publishing.lock().expect("not poisoned");
            let next = Arc::new(Prepared::new(
                &self.call_families.iter().map(|f| &**f).collect::<Vec<_>>(),
            ));
            let previous =
                std::mem::replace(&mut *self.prepared.write().expect("not poisoned"), next);
            // Freed after the lock is released: scrapes need not wait for it.
            drop(previous);
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(publish),
            // A current-thread runtime (tests) has no other thread to hand tasks to.
            _ => publish(),
        }
    }

    /// The call series as last published.
    pub fn prepared(&self) -> Arc<Prepared> {
        self.prepared.read().expect("not poisoned").clone()
    }

    /// A scrape's body: the call series as last published, then the poll health, the live
    /// status and the families of `also` (the exporter's own on `/metrics`) encoded now.
    pub fn body(&self, also: &[&Registry], gzip: bool) -> Vec<u8> {
        let mut registries = vec![&self.status];
        registries.extend_from_slice(also);
        let families = exposition::gather(&registries);
        let health = self.collectors.encode();
        let live = self.live.read().expect("not poisoned");
        let mut encoded: Vec<&Encoded> = live.values().flatten().chain(&health).collect();
        encoded.sort_by_key(|e| e.name());
        exposition::body_with(Some(&self.prepared()), &families, &encoded, gzip)
    }

    /// What the landing page shows beside the poll health: the CDR window mode in use, and
    /// whether each enabled live-status collector's last run worked.
    pub fn summary(&self) -> (Option<String>, Vec<(String, bool)>) {
        let mode = WINDOW_MODES
            .into_iter()
            .find(|m| self.window_mode.with_label_values(&[m]).get() == 1)
            .map(str::to_string);
        (mode, self.collectors.up())
    }

    /// Replaces the series of one live-status collector with those of its latest run.
    pub fn set_live(&self, collector: &'static str, families: Vec<Encoded>) {
        self.live
            .write()
            .expect("not poisoned")
            .insert(collector, families);
    }

    /// Removes the series of a collector whose run failed: stale status is worse than none.
    pub fn clear_live(&self, collector: &'static str) {
        self.live.write().expect("not poisoned").remove(collector);
    }

    /// The label value an extension gets under `extensions.max`, as for the call series; `None`
    /// past the cap, where a per-extension gauge has no meaningful "other".
    pub fn extension_label(&self, ext: &str) -> Option<String> {
        let mut l = self.extensions.lock().expect("not poisoned");
        let label = l.label(ext);
        (label != OTHER_EXTENSION || ext == OTHER_EXTENSION).then(|| label.to_string())
    }

    /// A target's whole exposition as a scrape of `/probe` sees it (plain), for tests and tools.
    pub fn text(&self) -> Vec<u8> {
        self.body(&[], false)
    }
}

/// Exporter-wide metrics: build info and the process collector.
/// The plain exposition of the exporter's own metrics (build info, process), as `/metrics` shows
/// them next to a target's.
pub fn exporter_text() -> Vec<u8> {
    exposition::body(None, &exposition::gather(&[&exporter_registry()]), false)
}

pub fn exporter_registry() -> Registry {
    let registry = Registry::new();
    let info = IntGauge::with_opts(
        Opts::new(
            "ucm_exporter_build_info",
            "A metric with a constant '1' value labeled by version, revision and rustc_version.",
        )
        .const_label("version", env!("CARGO_PKG_VERSION"))
        .const_label("revision", env!("UCM_EXPORTER_REVISION"))
        .const_label("rustc_version", env!("UCM_EXPORTER_RUSTC_VERSION")),
    )
    .expect("valid metric");
    info.set(1);
    registry.register(Box::new(info)).expect("unique metric");
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
    registry
}

/// The session's requests and logins, counted in the target's own metrics.
impl crate::ucm::ClientEvents for TargetMetrics {
    fn request(&self, action: &str) {
        self.api_requests.inc(&[action]);
    }

    fn login(&self, ok: bool) {
        self.logins.inc();
        if !ok {
            self.login_failures.inc();
        }
    }

    fn over_budget(&self, scope: &str) {
        self.budget_exhausted.inc(&[scope]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_cap_maps_the_rest_to_other() {
        let mut l = ExtensionLabels {
            known: HashSet::new(),
            max: 2,
        };
        assert_eq!(l.label("100"), "100");
        assert_eq!(l.label("101"), "101");
        assert_eq!(l.label("102"), "other");
        assert_eq!(l.label("100"), "100");
    }

    fn text(m: &TargetMetrics) -> String {
        String::from_utf8(m.text()).unwrap()
    }

    #[test]
    fn series_exist_at_zero_before_any_call() {
        let m = TargetMetrics::new(10);
        let before = text(&m);
        assert!(before.contains(
            "ucm_calls_total{direction=\"inbound\",disposition=\"no_answer\",trunk=\"\"} 0"
        ));
        assert!(!before.contains("Daisy"));
        m.add_trunk("Daisy");
        let after = text(&m);
        assert!(after.contains(
            "ucm_calls_total{direction=\"inbound\",disposition=\"no_answer\",trunk=\"Daisy\"} 0"
        ));
        assert!(after.contains(
            "ucm_call_wait_seconds_count{direction=\"outbound\",disposition=\"busy\",trunk=\"Daisy\"} 0"
        ));
        assert!(!after.contains("direction=\"internal\",disposition=\"answered\",trunk=\"Daisy\""));
        assert!(after.contains("ucm_poll_errors_total{reason=\"rate_limited\"} 0"));
        // A known trunk changes nothing, so nothing is encoded again.
        let published = m.prepared();
        m.add_trunks(["Daisy", ""]);
        assert!(Arc::ptr_eq(&published, &m.prepared()));
        m.add_trunks(["Daisy", "Rose", "Lily"]);
        let after = text(&m);
        assert!(after.contains("trunk=\"Rose\"") && after.contains("trunk=\"Lily\""));
    }

    #[test]
    fn a_scrape_after_apply_shows_the_new_counts() {
        let m = TargetMetrics::new(10);
        let mut tally = CallTally {
            records: 3,
            newest_start: Some(1_700_000_000),
            ..CallTally::default()
        };
        tally.add_extension_calls("101", Role::Callee, Disposition::Answered, 2);
        tally.add_extension_talk("101", Role::Callee, 30);
        m.apply(&tally);
        let t = text(&m);
        assert!(t.contains("ucm_cdr_records_total 3\n"), "{t}");
        assert!(t.contains("ucm_cdr_last_record_timestamp_seconds 1700000000\n"));
        assert!(t.contains(
            "ucm_extension_calls_total{disposition=\"answered\",extension=\"101\",role=\"callee\"} 2\n"
        ));
        assert!(
            t.contains("ucm_extension_talk_seconds_total{extension=\"101\",role=\"callee\"} 30\n")
        );
        // Extension counts alone are a change too.
        let mut tally = CallTally::default();
        tally.add_extension_calls("101", Role::Callee, Disposition::Answered, 1);
        m.apply(&tally);
        assert!(text(&m).contains(
            "ucm_extension_calls_total{disposition=\"answered\",extension=\"101\",role=\"callee\"} 3\n"
        ));
        // Most polls bring nothing: no encoding then.
        let published = m.prepared();
        m.apply(&CallTally::default());
        assert!(Arc::ptr_eq(&published, &m.prepared()));
    }

    #[test]
    fn poll_health_is_current_without_a_publication() {
        let m = TargetMetrics::new(10);
        let published = m.prepared();
        m.up.set(1);
        m.api_requests.inc(&["cdrapi"]);
        let t = text(&m);
        assert!(t.contains("ucm_up 1\n"));
        assert!(t.contains("ucm_api_requests_total{action=\"cdrapi\"} 1\n"));
        assert!(Arc::ptr_eq(&published, &m.prepared()));
        // Every family once.
        let mut names: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn group_visits_count_with_zero_series_and_service_level_buckets() {
        let m = TargetMetrics::with_service_levels(10, &[25, 20]);
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cdr/groups_ivr_queue_second_agent.json"
        ));
        let Ok(crate::cdr::CdrResponse::Records(entries)) = crate::cdr::parse_cdr_response(body)
        else {
            panic!("fixture parses");
        };
        let pattern = crate::cdr::ExtensionPattern::new(crate::cdr::ExtensionPattern::DEFAULT)
            .expect("default pattern");
        let call = crate::cdr::classify(&entries[0], &pattern).expect("a call");
        let mut tally = CallTally::default();
        tally.add_call(&call, None);
        m.apply(&tally);
        let t = text(&m);
        for line in [
            "ucm_group_calls_total{group=\"6500\",kind=\"queue\",outcome=\"answered\"} 1\n",
            "ucm_group_calls_total{group=\"6500\",kind=\"queue\",outcome=\"abandoned\"} 0\n",
            "ucm_group_wait_seconds_sum{group=\"6500\",kind=\"queue\",outcome=\"answered\"} 25\n",
            // 25 s is within the configured 25 s level, not the 20 s one.
            "ucm_group_wait_seconds_bucket{group=\"6500\",kind=\"queue\",outcome=\"answered\",le=\"20\"} 0\n",
            "ucm_group_wait_seconds_bucket{group=\"6500\",kind=\"queue\",outcome=\"answered\",le=\"25\"} 1\n",
            "ucm_group_member_calls_total{extension=\"2004\",group=\"6500\",kind=\"queue\",outcome=\"missed\"} 1\n",
            "ucm_group_member_calls_total{extension=\"2006\",group=\"6500\",kind=\"queue\",outcome=\"answered\"} 1\n",
            "ucm_ivr_calls_total{ivr=\"7000\",outcome=\"routed\"} 1\n",
            "ucm_ivr_calls_total{ivr=\"7000\",outcome=\"timeout\"} 0\n",
        ] {
            assert!(t.contains(line), "missing {line}");
        }
        // A listed group has its series before its first call; past the cap, "other".
        m.add_groups([(GroupKind::RingGroup, "6400")]);
        assert!(text(&m).contains(
            "ucm_group_calls_total{group=\"6400\",kind=\"ringgroup\",outcome=\"abandoned\"} 0\n"
        ));
        let many: Vec<String> = (0..MAX_GROUPS).map(|i| format!("9{i}")).collect();
        m.add_groups(many.iter().map(|g| (GroupKind::Queue, g.as_str())));
        let t = text(&m);
        assert!(t.contains("group=\"other\",kind=\"queue\""));
        assert!(!t.contains(&format!("group=\"{}\"", many[MAX_GROUPS - 1])));
    }
}
