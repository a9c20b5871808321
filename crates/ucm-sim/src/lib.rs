//! A simulated Grandstream UCM: its HTTPS API, a small business's call traffic and the faults a
//! real device shows, so the exporter can be tested end to end and demonstrated without
//! hardware. It follows docs/ucm-api.md for device behaviour and the counting rules of
//! docs/design.md §6 for what [`Truth`] computes.
//!
//! Decisions where the reference leaves a choice: a request without `cookie` gets `-5` (need
//! authentication), an unknown or expired one `-6`; an unknown action (or one of
//! [`Quirks::unknown_actions`]) or a body without `request.action` gets `-1` with
//! `error_msg "Invalid parameters!"`, before any cookie check (docs/ucm-api.md §4); cdrapi
//! without `format` answers CSV (the legacy default); unknown parameters are ignored, while
//! `timeFilterType` (and its misspelling `tineFilterType`) is read as [`Quirks::end_filter`]
//! says. Live status (trunks, extensions, queues) is worked out from the same channels as the
//! channel lists, plus device state that tests set (`SimHandle::set_trunk_status` and the like).
//! Cookie lifetimes and lockouts run on the simulated clock. Where the reference is uncertain,
//! [`Quirks`] switch to the other reading at run time.

mod admin;
mod cdrapi;
mod clock;
mod device;
mod faults;
mod live;
mod pbx;
mod quirks;
mod render;
mod server;
mod session;
mod store;
mod tls;
mod traffic;
mod truth;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{Datelike, NaiveDateTime};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cdrapi::parse_time;
pub use faults::{Fault, FaultRule};
pub use quirks::{
    AccountCasing, EndColumn, EndFilter, Order, Quirks, SystemTimeFormat, UptimeFormat,
};
pub use session::token;
pub use traffic::{
    BurstOutcome, GROUP_NAMES, HUNT_GROUP, HUNT_GROUP_NAME, IVR, IVR_NAME, QUEUE, QUEUE_NAME,
    RING_GROUP, RING_GROUP_NAME,
};
pub use truth::{classify, is_extension, CallClass, GroupVisit, Truth, SERVICE_LEVELS};

use clock::{to_secs, Reading, SimClock};
use session::Sessions;
use store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CookieMode {
    /// The cookie dies `cookie_ttl` after login, however much it is used.
    Absolute,
    /// Every accepted request restarts the `cookie_ttl` countdown.
    #[default]
    Sliding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Firmware {
    /// Top-level `cdr` equals the session id, 33 keys per flat record.
    Ucm62xx,
    /// Top-level `cdr` is `""`, plus the newer fields (44 keys per flat record).
    Ucm63xx,
    /// Alternates per entry, so one poll sees both shapes.
    #[default]
    Mixed,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Plain HTTP, loopback only; None = no admin endpoint.
    pub admin_listen: Option<SocketAddr>,
    pub tls: bool,
    /// Where `ca.pem` is written; None = a fresh temporary directory removed with the handle.
    pub cert_dir: Option<PathBuf>,
    pub username: String,
    /// API users sharing the password: `username`, then `username-1` … `username-(users-1)`.
    /// Challenges are kept per user, so a fleet of targets on one simulator, each logging in
    /// as its own user, logs in as if each had a UCM of its own.
    pub users: u32,
    pub password: String,
    pub cookie_ttl: Duration,
    pub cookie_mode: CookieMode,
    pub lockout_attempts: u32,
    pub lockout_duration: Duration,
    pub timezone: chrono_tz::Tz,
    pub firmware: Firmware,
    pub seed: u64,
    /// The sim's local clock at start; None = now in `timezone`.
    pub start_time: Option<NaiveDateTime>,
    /// 1.0 = real time; 0.0 = frozen (moved only by `advance`).
    pub clock_speed: f64,
    /// Generated calls start this far before `start_time`.
    pub history: Duration,
    /// Average over a day, shaped by time of day; 0 = no generated traffic at all.
    pub calls_per_hour: f64,
    /// Every hour at `calls_per_hour`, for loads that must not depend on the hour of day.
    pub flat_traffic: bool,
    /// Calls that failed before they were set up (about 4 % of the traffic) are written with an
    /// empty `end` and `answer`, as a real UCM writes them; off, they carry an end.
    pub endless_failed: bool,
    /// Cap on cdrapi `numRecords`, the documented maximum of 1000 by default;
    /// `Quirks::page_cap` replaces it at run time.
    pub max_records: usize,
    /// Uncertain API behaviours at start; change them later with [`SimHandle::set_quirks`].
    pub quirks: Quirks,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: None,
            tls: true,
            cert_dir: None,
            username: "cdrapi".into(),
            users: 1,
            password: "cdrapi-secret".into(),
            cookie_ttl: Duration::from_secs(600),
            cookie_mode: CookieMode::Sliding,
            lockout_attempts: 5,
            lockout_duration: Duration::from_secs(300),
            timezone: chrono_tz::UTC,
            firmware: Firmware::Mixed,
            seed: 1,
            start_time: None,
            clock_speed: 1.0,
            history: Duration::from_secs(24 * 3600),
            calls_per_hour: 60.0,
            flat_traffic: false,
            endless_failed: true,
            max_records: 1000,
            quirks: Quirks::default(),
        }
    }
}

/// What the simulator served, for tests that check how an exporter behaves (not only what it
/// computes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub bytes_sent: u64,
    pub cdr_entries_served: u64,
    pub sessions_created: u64,
    /// cdrapi answers listing entries for a live session, empty ones included.
    #[serde(default)]
    pub cdrapi_pages: u64,
    /// cdrapi answers that were an empty list because the session had died silently
    /// (`Quirks::silent_expiry`, `Fault::SilentlyExpireAfterPages`); not in `cdrapi_pages`.
    #[serde(default)]
    pub silent_expiry_pages: u64,
    /// Entries served without the legs `Quirks::late_legs_delay` still held back; also in
    /// `cdr_entries_served`.
    #[serde(default)]
    pub partial_entries_served: u64,
    /// Rows served per action: cdrapi entries, channel, account and trunk rows, queues, queue
    /// callers and queue members (the rows of the page shown, not `total_item`). Actions that
    /// list nothing are absent.
    #[serde(default)]
    pub entries_by_action: BTreeMap<String, u64>,
    /// `bytes_sent` split by the keys of `requests`; answers to paths other than the API's are
    /// under `(invalid)`, so the values sum to `bytes_sent`.
    #[serde(default)]
    pub bytes_by_action: BTreeMap<String, u64>,
    /// cdrapi entries served to requests whose window applied to the call's end
    /// (`timeFilterType=End` understood, see `Quirks::end_filter`); also in
    /// `cdr_entries_served`.
    #[serde(default)]
    pub cdr_entries_end_filtered: u64,
    /// TLS handshakes done in full, and those that resumed a session from a ticket.
    #[serde(default)]
    pub tls_full_handshakes: u64,
    #[serde(default)]
    pub tls_resumed: u64,
    /// cdrapi requests whose window applied to the call's end and was bounded by an
    /// `endTime`: the questions an end probe asks (an end-window poll sends no `endTime`).
    #[serde(default)]
    pub end_window_questions: u64,
}

/// State shared by the API server, the admin endpoint and the handle.
pub(crate) struct Sim {
    cfg: SimConfig,
    clock: SimClock,
    store: RwLock<Store>,
    sessions: Mutex<Sessions>,
    faults: Mutex<faults::Faults>,
    quirks: RwLock<Quirks>,
    stats: Mutex<Stats>,
    device: Mutex<device::Device>,
}

impl Sim {
    /// The UCM's UTC offset now: its zone's at the clock's reading. The simulator's DST change
    /// is a step of its clock, so in the hour a fall-back repeats the summer offset holds until
    /// the clock has been stepped back, the winter one after; a reading in a spring-forward gap
    /// (a clock not stepped) takes the offset after the gap.
    fn utc_offset(&self) -> chrono::FixedOffset {
        use chrono::{Offset, TimeZone};
        let now = self.clock.now();
        match self.cfg.timezone.offset_from_local_datetime(&now) {
            chrono::LocalResult::Single(o) => o.fix(),
            chrono::LocalResult::Ambiguous(summer, winter) => if self.clock.stepped_back() {
                winter
            } else {
                summer
            }
            .fix(),
            chrono::LocalResult::None => self.cfg.timezone.offset_from_utc_datetime(&now).fix(),
        }
    }

    /// The clock, after storing every call that has started by then. Read under the store lock,
    /// so that a clock step falls cleanly between two readings.
    fn generated_now(&self) -> Reading {
        let mut store = self.store.write().expect("store lock");
        let now = self.clock.reading();
        store.generate_until(now);
        now
    }

    fn truth(
        &self,
        after: NaiveDateTime,
        until: NaiveDateTime,
        started_from: Option<NaiveDateTime>,
    ) -> Truth {
        let started = started_from.map_or(i64::MIN, to_secs)..i64::MAX;
        self.truth_of(after, until, started)
    }

    fn truth_of(
        &self,
        after: NaiveDateTime,
        until: NaiveDateTime,
        started: std::ops::Range<i64>,
    ) -> Truth {
        let now = self.generated_now();
        let steps = self.clock.steps();
        self.store.read().expect("store lock").truth_where(
            (to_secs(after), to_secs(until).min(now.clock)),
            started,
            now,
            &steps,
        )
    }

    /// Steps the UCM's clock, after storing the calls placed before the step with the old one.
    /// Refuses a step that leaves the years 1–9999, where dates stop being printable.
    fn step_clock(&self, by: chrono::Duration) -> Result<(), String> {
        let mut store = self.store.write().expect("store lock");
        let now = self.clock.reading();
        let lowest = to_secs(
            NaiveDateTime::MIN
                .with_year(1)
                .unwrap_or(NaiveDateTime::MIN),
        );
        let highest = to_secs(
            NaiveDateTime::MAX
                .with_year(9999)
                .unwrap_or(NaiveDateTime::MAX),
        );
        let target = now.clock.saturating_add(by.num_seconds());
        if !(lowest..=highest).contains(&target) {
            return Err(format!(
                "a step of {} s takes the clock out of the years 1-9999",
                by.num_seconds()
            ));
        }
        store.generate_until(now);
        self.clock.step(now.steady, by.num_seconds());
        tracing::info!(target: "ucm_sim", seconds = by.num_seconds(), now = %self.clock.now(), "clock stepped");
        Ok(())
    }

    fn add_call(&self, entry: &serde_json::Value, visible_now: bool, live: bool) {
        let mut store = self.store.write().expect("store lock");
        let now = self.clock.reading();
        store.generate_until(now);
        store.add_value(entry, now, visible_now, live);
    }

    /// Places a burst from the clock's reading now on (see [`traffic::burst`]).
    fn burst(
        &self,
        what: (BurstOutcome, Option<&str>),
        calls: u32,
        over: Duration,
    ) -> Result<(), String> {
        let mut store = self.store.write().expect("store lock");
        let now = self.clock.reading();
        store.generate_until(now);
        let over = i64::try_from(over.as_secs()).map_err(|_| "too long a burst".to_string())?;
        let placed = traffic::burst(
            self.cfg.seed,
            what,
            now.steady,
            (calls, over),
            self.cfg.timezone,
        )?;
        store.add_burst(placed);
        tracing::info!(target: "ucm_sim", outcome = ?what.0, trunk = ?what.1, calls, over, "burst placed");
        Ok(())
    }

    fn quirks(&self) -> Quirks {
        self.quirks.read().expect("quirks lock").clone()
    }

    fn set_quirks(&self, quirks: Quirks) {
        tracing::info!(target: "ucm_sim", ?quirks, "quirks set");
        *self.quirks.write().expect("quirks lock") = quirks;
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().expect("stats lock")
    }

    fn count_handshake(&self, resumed: bool) {
        let mut s = self.stats();
        if resumed {
            s.tls_resumed += 1;
        } else {
            s.tls_full_handshakes += 1;
        }
    }

    fn device(&self) -> std::sync::MutexGuard<'_, device::Device> {
        self.device.lock().expect("device lock")
    }

    fn set_trunk(
        &self,
        name: &str,
        status: Option<&str>,
        out_of_service: Option<bool>,
    ) -> Result<(), String> {
        let mut device = self.device();
        let trunk = device.trunk_mut(name)?;
        if let Some(s) = status {
            trunk.status = Some(s.to_string());
        }
        if let Some(o) = out_of_service {
            trunk.out_of_service = o;
        }
        tracing::info!(target: "ucm_sim", name, ?status, ?out_of_service, "trunk set");
        Ok(())
    }

    fn set_extension(
        &self,
        ext: &str,
        registered: Option<bool>,
        out_of_service: Option<bool>,
    ) -> Result<(), String> {
        let mut device = self.device();
        let e = device.extension_mut(ext)?;
        if let Some(r) = registered {
            e.registered = r;
        }
        if let Some(o) = out_of_service {
            e.out_of_service = o;
        }
        tracing::info!(target: "ucm_sim", ext, ?registered, ?out_of_service, "extension set");
        Ok(())
    }

    fn set_storage_used(&self, partition: &str, used_kib: u64) -> Result<(), String> {
        let mut device = self.device();
        let p = device.partition_mut(partition)?;
        p.used_kib = used_kib.min(p.total_kib);
        tracing::info!(target: "ucm_sim", partition, used_kib = p.used_kib, "storage set");
        Ok(())
    }

    /// Up-time restarts and every session dies, as on a device that restarts; calls under way
    /// carry on, since the traffic model knows nothing of the PBX's state.
    fn reboot(&self) {
        self.device().booted_at = self.clock.steady_secs();
        self.sessions
            .lock()
            .expect("sessions lock")
            .invalidate_all();
        tracing::info!(target: "ucm_sim", "rebooted");
    }
}

/// Removes the temporary certificate directory with the last handle.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Inner {
    sim: Arc<Sim>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    ca_pem: String,
    ca_path: PathBuf,
    /// Cancelled by `shutdown` or with the last handle; stops both listeners.
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    _temp: Option<TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Control of a running simulator; cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// Starts the simulator: generates the history, binds the API (and admin) listeners.
pub async fn start(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    if let Some(a) = cfg.admin_listen {
        anyhow::ensure!(
            a.ip().is_loopback(),
            "the admin endpoint listens on loopback only, not {a}"
        );
    }
    cfg.quirks
        .check()
        .map_err(|e| anyhow::anyhow!("quirks: {e}"))?;
    let start_time = cfg.start_time.unwrap_or_else(|| {
        chrono::Utc::now()
            .with_timezone(&cfg.timezone)
            .naive_local()
    });
    let clock = SimClock::new(start_time, cfg.clock_speed);
    let history = chrono::Duration::from_std(cfg.history).context("history too long")?;
    let mut store = Store::new(
        cfg.seed,
        (cfg.calls_per_hour, cfg.flat_traffic),
        (cfg.firmware, cfg.timezone),
        to_secs(start_time - history),
    );
    store.set_endless(cfg.endless_failed);
    store.generate_until(Reading::unstepped(to_secs(start_time)));

    let (temp, dir) = match &cfg.cert_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (None, d.clone())
        }
        None => {
            let d = std::env::temp_dir().join(format!(
                "ucm-sim-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            (Some(TempDir(d.clone())), d)
        }
    };
    let (tls, ca_path) = tls::make(&dir)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = match cfg.admin_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding admin {a}"))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let sim = Arc::new(Sim {
        sessions: Mutex::new(Sessions::new(&cfg)),
        clock,
        store: RwLock::new(store),
        faults: Mutex::new(faults::Faults::default()),
        quirks: RwLock::new(cfg.quirks.clone()),
        stats: Mutex::new(Stats::default()),
        device: Mutex::new(device::Device::new(cfg.seed, to_secs(start_time))),
        cfg,
    });
    let stop = CancellationToken::new();
    let acceptor = sim.cfg.tls.then(|| tls.acceptor.clone());
    let mut tasks = vec![tokio::spawn(server::serve(
        listener,
        acceptor,
        sim.clone(),
        stop.clone(),
    ))];
    if let Some(l) = admin_listener {
        tasks.push(tokio::spawn(admin::serve(l, sim.clone(), stop.clone())));
    }
    tracing::info!(target: "ucm_sim", %addr, tls = sim.cfg.tls, admin = ?admin_addr, "UCM simulator listening");
    Ok(SimHandle {
        inner: Arc::new(Inner {
            sim,
            addr,
            admin_addr,
            ca_pem: tls.cert_pem,
            ca_path,
            stop,
            tasks: Mutex::new(tasks),
            _temp: temp,
        }),
    })
}

impl SimHandle {
    /// Base URL; clients POST to `url() + "/api"`.
    pub fn url(&self) -> String {
        let scheme = if self.inner.sim.cfg.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.inner.ca_path.clone()
    }

    pub fn admin_url(&self) -> Option<String> {
        self.inner.admin_addr.map(|a| format!("http://{a}"))
    }

    /// The UCM's clock: what it stamps CDRs with and reads filters against.
    pub fn now(&self) -> NaiveDateTime {
        self.inner.sim.clock.now()
    }

    /// The instant the UCM's clock shows now, read in its zone: what a host clock beside it,
    /// kept by NTP, would show. A step of the UCM's clock that is not a DST change moves it
    /// too.
    pub fn utc_now(&self) -> chrono::DateTime<chrono::Utc> {
        let offset = self.inner.sim.utc_offset().local_minus_utc();
        (self.now() - chrono::Duration::seconds(i64::from(offset))).and_utc()
    }

    /// The simulated clock's reading at start.
    pub fn start_time(&self) -> NaiveDateTime {
        self.inner.sim.clock.start()
    }

    /// Time passed since start on the steady time line, which clock steps do not move: what a
    /// client's monotonic clock would show.
    pub fn elapsed(&self) -> Duration {
        let steady = self.inner.sim.clock.steady_secs() - to_secs(self.inner.sim.clock.start());
        Duration::from_secs(steady.max(0) as u64)
    }

    /// Lets time pass: calls are placed and end, sessions age.
    pub fn advance(&self, d: Duration) {
        self.inner.sim.clock.advance(d);
        self.inner.sim.generated_now();
    }

    /// Steps the UCM's clock by `by` (negative = back), like an NTP correction, without time
    /// passing; whole seconds, the fraction dropped.
    ///
    /// Calls placed from now on are stamped with the stepped clock, and filters are read
    /// against it. Nothing already stored changes: a call under way keeps the stamps of the
    /// clock it started on and still ends after its own duration; entries already served stay
    /// served, even when their times now lie ahead of the clock. Sessions and lockouts run on
    /// time that passes, not on the clock, so a step does not expire them. For [`Truth`], an
    /// entry counts at the clock reading when it became visible, and a backward step brings
    /// that reading down to the clock's reading just after the step, so
    /// `truth(early, now())` always covers exactly what the UCM serves.
    ///
    /// # Panics
    ///
    /// When the step takes the clock out of the years 1–9999.
    pub fn step_clock(&self, by: chrono::Duration) {
        if let Err(e) = self.inner.sim.step_clock(by) {
            panic!("{e}");
        }
    }

    /// Injects one `cdr_root` entry; it becomes visible once the clock, as it reads now,
    /// reaches its latest leg end.
    pub fn add_call(&self, entry: serde_json::Value) {
        self.inner.sim.add_call(&entry, false, false);
    }

    /// As [`SimHandle::add_call`], and while the call is under way its channels are listed by
    /// `listBridgedChannels` and `listUnBridgedChannels`, worked out from its legs as for a
    /// generated call (`channel`, `dstchannel`, `start`, `duration`, `billsec`, `disposition`,
    /// `uniqueid`, …). Plain `add_call` leaves them out, so that injected rows do not change
    /// what the lists and `listAccount` show.
    pub fn add_live_call(&self, entry: serde_json::Value) {
        self.inner.sim.add_call(&entry, false, true);
    }

    /// Injects one `cdr_root` entry that is served from now on whatever its times say: a CDR
    /// written long after its call ended, or a row with a start in the clock's future, as a
    /// bogus record or a clock corrected backwards leaves behind. [`Truth`] counts it at the
    /// current reading.
    pub fn add_call_visible_now(&self, entry: serde_json::Value) {
        self.inner.sim.add_call(&entry, true, false);
    }

    /// Places `calls` inbound calls with `outcome`, starting evenly over the next `over` of the
    /// clock, on `trunk` or on the inbound trunks in turn: a missed-call spike, a queue whose
    /// callers give up, or the answered calls after either. They come on top of the generated
    /// traffic, appear as they end, and count in [`Truth`] like any other call.
    ///
    /// # Panics
    ///
    /// On an unknown trunk name: a test's own mistake.
    pub fn burst(&self, outcome: BurstOutcome, trunk: Option<&str>, calls: u32, over: Duration) {
        if let Err(e) = self.inner.sim.burst((outcome, trunk), calls, over) {
            panic!("burst: {e}");
        }
    }

    /// Bends the API's uncertain behaviours from the next request on.
    ///
    /// # Panics
    ///
    /// When [`Quirks::check`] refuses them: a test's own mistake.
    pub fn set_quirks(&self, quirks: Quirks) {
        if let Err(e) = quirks.check() {
            panic!("invalid quirks: {e}");
        }
        self.inner.sim.set_quirks(quirks);
    }

    pub fn quirks(&self) -> Quirks {
        self.inner.sim.quirks()
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.inner.sim.faults.lock().expect("faults lock").add(rule);
    }

    pub fn clear_faults(&self) {
        self.inner.sim.faults.lock().expect("faults lock").clear();
    }

    pub fn invalidate_sessions(&self) {
        self.inner
            .sim
            .sessions
            .lock()
            .expect("sessions lock")
            .invalidate_all();
    }

    /// Truth over the calls that became visible in `(visible_after, visible_until]`, in
    /// readings of the UCM's clock; a call is visible from its latest leg end, and
    /// `visible_until` is capped at the sim's now. Each call counts with all its legs, also
    /// while `Quirks::late_legs_delay` still holds some back.
    pub fn truth(&self, visible_after: NaiveDateTime, visible_until: NaiveDateTime) -> Truth {
        self.inner.sim.truth(visible_after, visible_until, None)
    }

    /// As [`SimHandle::truth`], over only the calls that started at or after `started_from`.
    pub fn truth_started_from(
        &self,
        visible_after: NaiveDateTime,
        visible_until: NaiveDateTime,
        started_from: NaiveDateTime,
    ) -> Truth {
        self.inner
            .sim
            .truth(visible_after, visible_until, Some(started_from))
    }

    /// Truth over the calls visible now that started in `[from, to)` of the UCM's clock: what
    /// a backfill of that range counts.
    pub fn truth_started_within(&self, from: NaiveDateTime, to: NaiveDateTime) -> Truth {
        let started = to_secs(from)..to_secs(to);
        self.inner
            .sim
            .truth_of(NaiveDateTime::MIN, self.now(), started)
    }

    pub fn stats(&self) -> Stats {
        self.inner.sim.stats().clone()
    }

    /// Sets the status `listAllTrunk` (and `getSIPTrunk` with `Quirks::sip_trunk_status`)
    /// shows for the trunk named `name` (a `trunk_name` of the CDRs), verbatim: `Registered`,
    /// `Unregistered`, `Rejected`, `Timeout`, `Failed`, `OK`, `Reachable`, `Unreachable`,
    /// `Unmonitored`, `Lagged` or anything a test wants a client to cope with.
    ///
    /// # Panics
    ///
    /// For a trunk the simulator does not have.
    pub fn set_trunk_status(&self, name: &str, status: &str) {
        if let Err(e) = self.inner.sim.set_trunk(name, Some(status), None) {
            panic!("{e}");
        }
    }

    /// # Panics
    ///
    /// For a trunk the simulator does not have.
    pub fn set_trunk_out_of_service(&self, name: &str, out_of_service: bool) {
        if let Err(e) = self.inner.sim.set_trunk(name, None, Some(out_of_service)) {
            panic!("{e}");
        }
    }

    /// An unregistered phone is `Unavailable` in `listAccount`, whatever calls it is in; a few
    /// phones of each seed start unregistered (unplugged).
    ///
    /// # Panics
    ///
    /// For an extension the simulator does not have.
    pub fn set_extension_registered(&self, ext: &str, registered: bool) {
        if let Err(e) = self.inner.sim.set_extension(ext, Some(registered), None) {
            panic!("{e}");
        }
    }

    /// # Panics
    ///
    /// For an extension the simulator does not have.
    pub fn set_extension_out_of_service(&self, ext: &str, out_of_service: bool) {
        if let Err(e) = self
            .inner
            .sim
            .set_extension(ext, None, Some(out_of_service))
        {
            panic!("{e}");
        }
    }

    /// Fills the partition (`cfg` or `data`) of `getStorageUsage` to `used_kib`, at most its
    /// size.
    ///
    /// # Panics
    ///
    /// For a partition the simulator does not have.
    pub fn set_storage_used(&self, partition: &str, used_kib: u64) {
        if let Err(e) = self.inner.sim.set_storage_used(partition, used_kib) {
            panic!("{e}");
        }
    }

    /// Restarts the UCM: `up-time` counts from now (steady time), every session is dropped
    /// (-6 from then on), queue member statistics start again. Calls under way carry on.
    pub fn reboot(&self) {
        self.inner.sim.reboot();
    }

    /// Stops the listeners and drops open connections.
    pub async fn shutdown(self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
    }
}
