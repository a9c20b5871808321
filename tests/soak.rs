//! Soak under faults: the real binary against a simulator with live traffic, while the UCM
//! misbehaves, the exporter is restarted and killed, its state directory turns read-only, its
//! state file is corrupted and the UCM's clock steps. At the end the counters summed over every
//! run of the exporter are compared with the simulator's ground truth (docs/soak.md).
//!
//! - `soak_graceful_restarts_count_every_call_exactly_once` (window mode `auto`): every stop is
//!   a SIGTERM at a random moment, mid-poll too. Every counted series, summed over the runs as
//!   Prometheus sees them (each run's first and last scrape, the counters continuing from the
//!   state file), equals the ground truth exactly.
//! - `soak_kills_and_a_corrupt_state_lose_only_what_the_corrupt_file_held` (window mode
//!   `start`): SIGKILLs (right after a commit no scrape saw, and mid-write with the write torn
//!   as by a power loss) and SIGTERMs at random moments, and one corrupt state file. Every
//!   series equals the ground truth less exactly the calls the corrupt file loses by design
//!   (those that ended while the exporter was down before its new baseline).
//! - `soak_one_process_under_faults_keeps_memory_and_descriptors_flat` (ignored; the long form
//!   of scripts/soak.sh runs it): one process for the whole soak, every fault but restarts,
//!   sampling its RSS and open descriptors; exact at the end.
//!
//! `SOAK_SECS` (default 60) is the length of the fault phase of each soak, `SOAK_SEED` replays
//! a run (the seed is printed first), `SOAK_CALLS_PER_HOUR` (default 100000) the offered load,
//! `SOAK_KEEP` keeps the soak's directory (state, config, the exporter's log) when it passes.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use common::{start_sim, Sample, Scrape};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ucm_exporter::state::PollState;
use ucm_sim::{Fault, FaultRule, SimConfig, SimHandle, Truth};

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");
const TARGET: &str = "office";
const POLL: Duration = Duration::from_secs(1);
const SWEEP: Duration = Duration::from_secs(4);
const SAFETY_SWEEP: Duration = Duration::from_secs(6);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How far the simulator's generated calls reach back before the first baseline: calls under way
/// at the baseline end during the soak and must count.
const HISTORY: Duration = Duration::from_secs(5 * 60);
/// The simulator's clock at start: the host's hour so far, plus [`HISTORY`]. The simulator
/// generates calls in whole hour slots, from the slot that holds `start - HISTORY`, so starting
/// there keeps what every sweep re-reads to the soak's own calls plus 5 minutes, whatever the
/// minute the test runs at. The simulated UCM's clock is then up to 55 minutes behind the
/// exporter's host (or up to 5 ahead in the first minutes of an hour), which the exporter does
/// not rely on (docs/design.md §4).
fn sim_start() -> NaiveDateTime {
    let now = chrono::Utc::now().timestamp();
    let hour = now - now.rem_euclid(3600);
    chrono::DateTime::from_timestamp(hour + HISTORY.as_secs() as i64, 0)
        .unwrap()
        .naive_utc()
}

/// Descriptors a run may hold more when it stops than once it first logged in (connections to
/// the UCM and from the scraper come and go).
const FD_SLACK: usize = 6;

/// The counter series compared with the ground truth, summed over runs.
const COUNTED: [&str; 14] = [
    "ucm_calls_total",
    "ucm_call_talk_seconds_count",
    "ucm_call_talk_seconds_sum",
    "ucm_call_wait_seconds_count",
    "ucm_call_wait_seconds_sum",
    "ucm_extension_calls_total",
    "ucm_extension_talk_seconds_total",
    "ucm_cdr_records_total",
    "ucm_group_calls_total",
    "ucm_group_wait_seconds_count",
    "ucm_group_wait_seconds_sum",
    "ucm_group_wait_seconds_bucket",
    "ucm_group_member_calls_total",
    "ucm_ivr_calls_total",
];

// ---------------------------------------------------------------------------------------------
// Parameters

#[derive(Debug, Clone, Copy)]
struct Params {
    secs: u64,
    seed: u64,
    calls_per_hour: f64,
}

impl Params {
    fn from_env() -> Params {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let secs = var("SOAK_SECS").map_or(60, |v| v.trim().parse().expect("SOAK_SECS: seconds"));
        let seed = var("SOAK_SEED").map_or_else(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_007
            },
            |v| v.trim().parse().expect("SOAK_SEED: a number"),
        );
        let calls_per_hour = var("SOAK_CALLS_PER_HOUR").map_or(100_000.0, |v| {
            v.trim().parse().expect("SOAK_CALLS_PER_HOUR: a number")
        });
        Params {
            secs,
            seed,
            calls_per_hour,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SIGTERM restarts only: exact.
    Graceful,
    /// SIGKILLs, SIGTERMs at random moments and a corrupt state file: bounded.
    Kills,
    /// One process for the whole soak: exact, and its memory and descriptors stay flat.
    OneProcess,
}

// ---------------------------------------------------------------------------------------------
// The simulator's clock, moved by the test in whole seconds at wall-clock pace, so that it can
// be frozen at any moment (a baseline, the end) and resumed.

struct Drive {
    running: bool,
    since: Instant,
    carry: Duration,
}

struct Traffic {
    drive: Arc<Mutex<Drive>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Frozen until [`Traffic::resume`].
    fn new(sim: SimHandle) -> Traffic {
        let drive = Arc::new(Mutex::new(Drive {
            running: false,
            since: Instant::now(),
            carry: Duration::ZERO,
        }));
        let stop = CancellationToken::new();
        let (d, s) = (drive.clone(), stop.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                let mut d = d.lock().unwrap();
                if !d.running {
                    continue;
                }
                let now = Instant::now();
                let since = std::mem::replace(&mut d.since, now);
                d.carry += now - since;
                let whole = Duration::from_secs(d.carry.as_secs());
                if !whole.is_zero() {
                    // Under the lock: once `pause` returns, the clock stands still.
                    sim.advance(whole);
                    d.carry -= whole;
                }
            }
        });
        Traffic {
            drive,
            stop,
            task: Some(task),
        }
    }

    fn resume(&self) {
        let mut d = self.drive.lock().unwrap();
        d.running = true;
        d.since = Instant::now();
    }

    fn pause(&self) {
        let mut d = self.drive.lock().unwrap();
        d.running = false;
        d.carry = Duration::ZERO;
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy between the exporter and the simulator (TLS passes through untouched), so that
// "the UCM is down" is a refused connection and open connections are cut, and "it is back" is
// the same address again.

struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

fn bind_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

async fn forward(listener: TcpListener, upstream: SocketAddr, stop: CancellationToken) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                if let Ok((mut inbound, _)) = accepted {
                    conns.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping the sockets cuts every open connection.
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = bind_reusable(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(listener, upstream, stop.clone()));
        Proxy {
            addr,
            upstream,
            running: Some((stop, task)),
        }
    }

    async fn down(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    async fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let listener = loop {
            match bind_reusable(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind the proxy to {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(listener, self.upstream, stop.clone()));
        self.running = Some((stop, task));
    }
}

// ---------------------------------------------------------------------------------------------
// The state directory turned read-only. chmod does not stop root, so as root the directory is
// made immutable (`chattr +i`, ext2/3/4, xfs, btrfs); where that is refused too, a directory is
// put where the state's temporary file goes, which fails the write the same way (as
// tests/bending.rs does).

enum RoHow {
    Chmod,
    Chattr,
    Blocker(PathBuf),
}

impl RoHow {
    fn name(&self) -> &'static str {
        match self {
            RoHow::Chmod => "chmod 0555",
            RoHow::Chattr => "chattr +i",
            RoHow::Blocker(_) => "a directory in the place of NAME.json.tmp",
        }
    }
}

struct ReadOnly {
    dir: PathBuf,
    how: RoHow,
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".soak-probe");
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn chattr(flag: &str, dir: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ReadOnly {
    fn on(dir: &Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir.to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        if !writable(&dir) {
            return ReadOnly {
                dir,
                how: RoHow::Chmod,
            };
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if chattr("+i", &dir) {
            if !writable(&dir) {
                return ReadOnly {
                    dir,
                    how: RoHow::Chattr,
                };
            }
            chattr("-i", &dir);
        }
        let blocker = dir.join(format!("{TARGET}.json.tmp"));
        let _ = std::fs::remove_file(&blocker);
        std::fs::create_dir(&blocker).unwrap();
        ReadOnly {
            dir,
            how: RoHow::Blocker(blocker),
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        match &self.how {
            RoHow::Chmod => {
                let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
            }
            RoHow::Chattr => {
                chattr("-i", &self.dir);
            }
            RoHow::Blocker(b) => {
                let _ = std::fs::remove_dir(b);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The exporter's log, kept in a file of the soak's directory (left behind when a soak fails).

struct Log {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    tail: Mutex<VecDeque<String>>,
    panicked: AtomicBool,
}

impl Log {
    fn new(path: PathBuf) -> Log {
        Log {
            file: Mutex::new(std::fs::File::create(&path).unwrap()),
            path,
            tail: Mutex::new(VecDeque::new()),
            panicked: AtomicBool::new(false),
        }
    }

    fn push(&self, run: usize, line: &str) {
        let _ = writeln!(self.file.lock().unwrap(), "[run {run}] {line}");
        let mut tail = self.tail.lock().unwrap();
        if tail.len() >= 60 {
            tail.pop_front();
        }
        tail.push_back(format!("[run {run}] {line}"));
    }

    fn note(&self, what: &str) {
        let _ = writeln!(self.file.lock().unwrap(), "[soak] {what}");
    }

    fn tail(&self) -> String {
        let tail = self.tail.lock().unwrap();
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!(
            "last lines of the exporter's log ({}):\n{}",
            self.path.display(),
            lines.join("\n")
        )
    }
}

/// The soak's files; removed when the soak passes, kept (and named) when it fails or `SOAK_KEEP`
/// is set.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SOAK_KEEP").is_some() {
            eprintln!("soak files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One run of the exporter binary.

struct Run {
    no: usize,
    child: Child,
    pid: u32,
    base: String,
    started: Instant,
    /// Successful sweeps this run has logged ("poll done" of kind sweep).
    sweeps: Arc<AtomicUsize>,
    /// Successful polls this run has logged ("poll done").
    polls: Arc<AtomicUsize>,
    /// Reads this run has logged as done with new calls (each after its commit).
    counting_reads: Arc<AtomicUsize>,
    /// Open descriptors when a scrape first showed a successful login (0 before).
    fds_first: AtomicUsize,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Counting: the counted series of several scrapes summed, and series keyed for comparison.

/// The counted series as Prometheus sees them over every scrape added: a value below the
/// previous one is a counter reset (a run that started from zero), anything else an increase.
/// A series a scrape lacks is at zero in that run: a run whose counters started from zero has
/// no series of an extension before that extension's first call.
#[derive(Debug, Default, Clone)]
struct Ledger {
    /// Each series' increase over the scrapes so far.
    total: BTreeMap<(String, Vec<(String, String)>), f64>,
    /// Each series' value in the latest scrape that had it.
    last: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Ledger {
    /// Adds a scrape; returns the calls it shows beyond the previous one.
    fn add(&mut self, s: &Scrape) -> f64 {
        let mut calls = 0.0;
        let shown: std::collections::BTreeSet<(&str, Vec<(String, String)>)> =
            s.0.iter()
                .map(|x| {
                    let labels = x.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
                    (x.name.as_str(), labels.collect())
                })
                .collect();
        for ((name, labels), v) in self.last.iter_mut() {
            if !shown.contains(&(name.as_str(), labels.clone())) {
                *v = 0.0;
            }
        }
        for x in s.0.iter().filter(|x| COUNTED.contains(&x.name.as_str())) {
            let labels = x
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let key = (x.name.clone(), labels);
            let before = self.last.insert(key.clone(), x.value).unwrap_or(0.0);
            let increase = if x.value >= before {
                x.value - before
            } else {
                x.value
            };
            if x.name == "ucm_calls_total" {
                calls += increase;
            }
            *self.total.entry(key).or_default() += increase;
        }
        calls
    }

    fn plus(&self, s: &Scrape) -> Ledger {
        let mut l = self.clone();
        l.add(s);
        l
    }

    fn scrape(&self) -> Scrape {
        Scrape(
            self.total
                .iter()
                .map(|((name, labels), value)| Sample {
                    name: name.clone(),
                    labels: labels.iter().cloned().collect(),
                    value: *value,
                })
                .collect(),
        )
    }
}

fn series_key(name: &str, parts: &[&str]) -> String {
    format!("{name}{{{}}}", parts.join(","))
}

/// Every counted series of the ground truth, non-zero ones only, keyed as [`observed`] keys them.
fn expected(t: &Truth) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut put = |k: String, v: u64| {
        if v != 0 {
            *m.entry(k).or_insert(0.0) += v as f64;
        }
    };
    for ((d, tr, di), n) in &t.calls {
        put(series_key("ucm_calls_total", &[d, tr, di]), *n);
    }
    for ((d, tr), (n, s)) in &t.talk {
        put(series_key("ucm_call_talk_seconds_count", &[d, tr]), *n);
        put(series_key("ucm_call_talk_seconds_sum", &[d, tr]), *s);
    }
    for ((d, tr, di), (n, s)) in &t.wait {
        put(series_key("ucm_call_wait_seconds_count", &[d, tr, di]), *n);
        put(series_key("ucm_call_wait_seconds_sum", &[d, tr, di]), *s);
    }
    for ((e, r, di), n) in &t.extension_calls {
        put(series_key("ucm_extension_calls_total", &[e, r, di]), *n);
    }
    for ((e, r), s) in &t.extension_talk {
        put(series_key("ucm_extension_talk_seconds_total", &[e, r]), *s);
    }
    put(series_key("ucm_cdr_records_total", &[]), t.records);
    for ((k, g, o), n) in &t.group_calls {
        put(series_key("ucm_group_calls_total", &[k, g, o]), *n);
    }
    for ((k, g, o), (n, s)) in &t.group_wait {
        put(series_key("ucm_group_wait_seconds_count", &[k, g, o]), *n);
        put(series_key("ucm_group_wait_seconds_sum", &[k, g, o]), *s);
    }
    for ((k, g, o, le), n) in &t.group_wait_within {
        let le = le.to_string();
        put(
            series_key("ucm_group_wait_seconds_bucket", &[k, g, o, &le]),
            *n,
        );
    }
    for ((k, g, e, o), n) in &t.group_members {
        put(
            series_key("ucm_group_member_calls_total", &[k, g, e, o]),
            *n,
        );
    }
    for ((i, o), n) in &t.ivr_calls {
        put(series_key("ucm_ivr_calls_total", &[i, o]), *n);
    }
    m
}

/// The counted series of a scrape, non-zero ones only; of the group wait buckets only the
/// service levels the truth counts.
fn observed(s: &Scrape) -> BTreeMap<String, f64> {
    const KEYS: [(&str, &[&str]); 13] = [
        ("ucm_calls_total", &["direction", "trunk", "disposition"]),
        ("ucm_call_talk_seconds_count", &["direction", "trunk"]),
        ("ucm_call_talk_seconds_sum", &["direction", "trunk"]),
        (
            "ucm_call_wait_seconds_count",
            &["direction", "trunk", "disposition"],
        ),
        (
            "ucm_call_wait_seconds_sum",
            &["direction", "trunk", "disposition"],
        ),
        (
            "ucm_extension_calls_total",
            &["extension", "role", "disposition"],
        ),
        ("ucm_extension_talk_seconds_total", &["extension", "role"]),
        ("ucm_cdr_records_total", &[]),
        ("ucm_group_calls_total", &["kind", "group", "outcome"]),
        (
            "ucm_group_wait_seconds_count",
            &["kind", "group", "outcome"],
        ),
        ("ucm_group_wait_seconds_sum", &["kind", "group", "outcome"]),
        (
            "ucm_group_member_calls_total",
            &["kind", "group", "extension", "outcome"],
        ),
        ("ucm_ivr_calls_total", &["ivr", "outcome"]),
    ];
    let mut m = BTreeMap::new();
    for (name, keys) in KEYS {
        for (k, v) in s.by(name, keys) {
            let parts: Vec<&str> = k.iter().map(String::as_str).collect();
            m.insert(series_key(name, &parts), v);
        }
    }
    let levels: Vec<String> = ucm_sim::SERVICE_LEVELS.iter().map(u64::to_string).collect();
    for (k, v) in s.by(
        "ucm_group_wait_seconds_bucket",
        &["kind", "group", "outcome", "le"],
    ) {
        if levels.contains(&k[3]) {
            let parts: Vec<&str> = k.iter().map(String::as_str).collect();
            m.insert(series_key("ucm_group_wait_seconds_bucket", &parts), v);
        }
    }
    m
}

/// Series where `got` differs from `want` (`at_most`: only where it exceeds it), as lines.
fn differences(
    got: &BTreeMap<String, f64>,
    want: &BTreeMap<String, f64>,
    at_most: bool,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (g, w) = (
                got.get(k).copied().unwrap_or(0.0),
                want.get(k).copied().unwrap_or(0.0),
            );
            let bad = if at_most { g > w } else { g != w };
            bad.then(|| format!("  {k}: counted {g}, truth {w}"))
        })
        .collect()
}

/// Whether the state file is there and decodes.
fn state_loads(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .is_some_and(|b| serde_json::from_slice::<PollState>(&b).is_ok())
}

// ---------------------------------------------------------------------------------------------
// The soak.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Http500,
    Garbage,
    Truncated,
    Html403,
    Slow,
    RateLimit(i64),
    InvalidateAfterPages,
    InvalidateNow,
    ProxyOutage,
    ClockStep,
    ReadOnly,
}

const DECK: [Event; 14] = [
    Event::Http500,
    Event::Garbage,
    Event::Truncated,
    Event::Html403,
    Event::Slow,
    Event::RateLimit(-45),
    Event::RateLimit(-46),
    Event::RateLimit(-57),
    Event::InvalidateAfterPages,
    Event::InvalidateNow,
    Event::ProxyOutage,
    Event::ClockStep,
    Event::ClockStep,
    Event::ReadOnly,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM at a random moment, mid-poll too.
    Term,
    /// SIGKILL at a random moment, mid-poll too, or right after a commit no scrape has seen.
    Kill,
    /// SIGKILL while the state file is being written, and the write torn as a power loss
    /// would leave it.
    KillMidWrite,
}

#[derive(Default)]
struct Tally {
    injected: BTreeMap<String, u32>,
    stops: BTreeMap<&'static str, u32>,
    /// Calls a run's first scrape showed beyond its predecessor's last: commits no scrape had
    /// seen, continued from the state file.
    recovered: f64,
    /// Kills that came while a state write was under way (its temporary file there), and torn
    /// temporary files left for the next run.
    torn_writes: (u32, u32),
    corrupt: Option<Truth>,
    ro_periods: u32,
    ro_how: Option<&'static str>,
    clock_steps: Vec<i64>,
    /// Steps that put the UCM's clock more than 5 minutes ahead of the host's.
    clock_past_slack: u32,
    outages: u32,
    login_failures: u32,
    /// Successful polls of every run, as their logs say (read before the last one ends; a few
    /// lines may still be on their way).
    polls_ok: usize,
    poll_errors: BTreeMap<String, f64>,
    /// (run, descriptors when it first logged in, when it stopped)
    fds: Vec<(usize, usize, usize)>,
    /// (seconds since start, RSS KiB, descriptors) of the one-process soak.
    samples: Vec<(f64, u64, usize)>,
}

impl Tally {
    fn injected(&mut self, what: impl Into<String>) {
        *self.injected.entry(what.into()).or_default() += 1;
    }
}

struct Soak {
    name: &'static str,
    kind: Kind,
    mode: &'static str,
    p: Params,
    rng: StdRng,
    // Dropped before the directory, so that a read-only state dir is restored first.
    ro: Option<ReadOnly>,
    run: Option<Run>,
    traffic: Traffic,
    proxy: Proxy,
    sim: SimHandle,
    log: Arc<Log>,
    client: reqwest::Client,
    config: PathBuf,
    state_dir: PathBuf,
    runs: usize,
    /// The counted series as Prometheus sees them: each run's first and last scrape.
    ledger: Ledger,
    /// Where counting began for the epoch under way (the baseline's frozen clock reading).
    epoch_t0: NaiveDateTime,
    /// The ground truth of the epochs before it.
    closed: Truth,
    /// The UCM clock's step not yet undone.
    offset: i64,
    next_stop: Instant,
    started: Instant,
    tally: Tally,
    _dir: WorkDir,
}

impl Soak {
    async fn new(name: &'static str, kind: Kind, mode: &'static str) -> Soak {
        let p = Params::from_env();
        let salt = match kind {
            Kind::Graceful => 1,
            Kind::Kills => 2,
            Kind::OneProcess => 3,
        };
        let rng = StdRng::seed_from_u64(p.seed.wrapping_mul(31).wrapping_add(salt));
        eprintln!(
            "soak {name}: seed {} (replay: SOAK_SEED={} SOAK_SECS={} cargo test --test soak {name}), \
             {} s of faults, {} calls/h offered, window_mode {mode}",
            p.seed, p.seed, p.secs, p.secs, p.calls_per_hour
        );
        let start = sim_start();
        let sim = start_sim(SimConfig {
            seed: p.seed.wrapping_add(salt),
            start_time: Some(start),
            clock_speed: 0.0,
            history: HISTORY,
            calls_per_hour: p.calls_per_hour,
            flat_traffic: true,
            ..SimConfig::default()
        })
        .await;
        let proxy = Proxy::start(sim.addr()).await;
        let dir =
            std::env::temp_dir().join(format!("ucm-soak-{name}-{}-{}", std::process::id(), p.seed));
        let _ = std::fs::remove_dir_all(&dir);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let password = dir.join("office.password");
        std::fs::write(&password, format!("{}\n", SimConfig::default().password)).unwrap();
        let config = dir.join("ucm-exporter.yml");
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        std::fs::write(
            &config,
            format!(
                "poll_interval: {poll}\n\
                 state_dir: {state}\n\
                 max_call_duration: 130m\n\
                 sweep_interval: {sweep}\n\
                 overlap: 20s\n\
                 window_mode: {mode}\n\
                 safety_sweep_interval: {safety}\n\
                 session_renew_after: 20s\n\
                 request_timeout: {timeout}\n\
                 collectors: {{system: false, trunks: false, extensions: false, channels: false, \
                 queues: false, groups: false, storage: false}}\n\
                 targets:\n\
                 \x20 - name: {TARGET}\n\
                 \x20   url: https://{proxy}\n\
                 \x20   username: cdrapi\n\
                 \x20   password_file: {password}\n\
                 \x20   timezone: UTC\n\
                 \x20   tls:\n\
                 \x20     ca_file: {ca}\n",
                poll = secs(POLL),
                state = state_dir.display(),
                sweep = secs(SWEEP),
                safety = secs(SAFETY_SWEEP),
                timeout = secs(REQUEST_TIMEOUT),
                proxy = proxy.addr,
                password = password.display(),
                ca = sim.ca_path().display(),
            ),
        )
        .unwrap();
        ucm_exporter::ucm::install_crypto_provider();
        let log = Arc::new(Log::new(dir.join("exporter.log")));
        Soak {
            name,
            kind,
            mode,
            p,
            rng,
            ro: None,
            run: None,
            traffic: Traffic::new(sim.clone()),
            proxy,
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            config,
            state_dir,
            runs: 0,
            ledger: Ledger::default(),
            epoch_t0: sim.now(),
            closed: Truth::default(),
            offset: 0,
            next_stop: Instant::now(),
            started: Instant::now(),
            tally: Tally::default(),
            _dir: WorkDir(dir),
            sim,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.state_dir.join(format!("{TARGET}.json"))
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn note(&self, what: &str) {
        self.log.note(&format!(
            "{:7.2}s {what}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn fail(&self, what: &str) -> ! {
        panic!("soak {}: {what}\n{}", self.name, self.log.tail());
    }

    /// Starts the next run and waits until it listens.
    async fn spawn(&mut self) {
        assert!(self.run.is_none(), "one run at a time");
        self.runs += 1;
        let no = self.runs;
        self.note(&format!("run {no} starts"));
        let mut child = Command::new(BIN)
            .args([
                "--config.file",
                self.config.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.level",
                "debug",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the exporter starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let sweeps = Arc::new(AtomicUsize::new(0));
        let counting_reads = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let (log, swept, counted) = (self.log.clone(), sweeps.clone(), counting_reads.clone());
        let polled = polls.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("poll done") {
                    polled.fetch_add(1, Ordering::SeqCst);
                    if line.contains("sweep") {
                        swept.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if line.contains("read done") && !line.contains("new_calls=0") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                if line.contains("panicked") {
                    log.panicked.store(true, Ordering::SeqCst);
                }
                if line.contains(" listening") {
                    if let Some(a) = line.split("address=").nth(1) {
                        let a = a.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(a.to_string());
                    }
                }
                log.push(no, &line);
            }
        });
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(a) = rx.try_recv() {
                break a;
            }
            if let Some(status) = child.try_wait().unwrap() {
                self.fail(&format!("run {no} exited at start: {status}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("run {no} did not listen within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.run = Some(Run {
            no,
            child,
            pid,
            base: format!("http://{addr}"),
            started: Instant::now(),
            sweeps,
            polls,
            counting_reads,
            fds_first: AtomicUsize::new(0),
        });
        // Prometheus's first scrape of the run: the counters as the state file left them, which
        // may hold commits the last run's last scrape did not show.
        let first = self.scrape().await;
        let recovered = self.ledger.add(&first);
        if recovered > 0.0 {
            self.note(&format!(
                "run {no} starts with {recovered} calls its predecessor's last scrape did not show"
            ));
            self.tally.recovered += recovered;
        }
    }

    async fn scrape(&self) -> Scrape {
        let run = self.run.as_ref().expect("a run");
        let url = format!("{}/probe?target={TARGET}", run.base);
        for _ in 0..100 {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status() == 200 {
                    if let Ok(text) = r.text().await {
                        let scrape = Scrape::parse(&text);
                        let logins = |n| scrape.get(n, &[]).unwrap_or(0.0);
                        if run.fds_first.load(Ordering::SeqCst) == 0
                            && logins("ucm_logins_total") > logins("ucm_login_failures_total")
                        {
                            let fds = fd_count(run.pid).unwrap_or(0);
                            run.fds_first.store(fds, Ordering::SeqCst);
                        }
                        return scrape;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(&format!("run {} does not answer /probe", run.no));
    }

    /// Scrapes until `done` holds, within `within`.
    async fn scrape_until(&self, within: Duration, what: &str, done: impl Fn(&Scrape) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.scrape().await) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("waited {within:?} for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until the run has logged in once: the shared login record then starts from zero
    /// rejections, so that no sequence of SIGKILLs mid-login (each counts as a rejection) can
    /// ration the logins (3 in a row).
    async fn logged_in(&mut self) {
        self.scrape_until(Duration::from_secs(90), "a successful login", |s| {
            s.get("ucm_logins_total", &[]).unwrap_or(0.0)
                > s.get("ucm_login_failures_total", &[]).unwrap_or(0.0)
        })
        .await;
    }

    /// Until the run's first successful poll: a baseline, when the state is missing.
    async fn up(&mut self) {
        self.scrape_until(Duration::from_secs(90), "ucm_up 1", |s| {
            s.get("ucm_up", &[]) == Some(1.0)
        })
        .await;
        self.logged_in().await;
    }

    fn sweeps(&self) -> usize {
        self.run.as_ref().unwrap().sweeps.load(Ordering::SeqCst)
    }

    /// Until the run has logged `n` successful sweeps; false after `within`.
    async fn sweeps_reach(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.sweeps() < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// The ground truth of every call that has become visible since counting began.
    fn truth_now(&self) -> Truth {
        let mut t = self.closed.clone();
        t.merge(&self.sim.truth(self.epoch_t0, self.sim.now()));
        t
    }

    /// No series, summed over the runs so far, may exceed what has become visible: a count above
    /// the truth is a double count.
    fn check_no_double_count(&self, counted: &Ledger, when: &str) {
        let extra = differences(
            &observed(&counted.scrape()),
            &expected(&self.truth_now()),
            true,
        );
        if !extra.is_empty() {
            self.fail(&format!(
                "{when}: counted more than the truth (a double count):\n{}",
                extra.join("\n")
            ));
        }
    }

    /// Stops the run as `how` says and adds its last scrape to the ledger. Nothing waits for
    /// the run to be idle: a commit after that scrape is the next run's to show, from the file.
    async fn stop(&mut self, how: Stop) {
        let last = self.scrape().await;
        let counted = self.ledger.plus(&last);
        let no = self.run.as_ref().unwrap().no;
        self.check_no_double_count(&counted, &format!("run {no} before its stop"));
        let tmp = self.state_dir.join(format!("{TARGET}.json.tmp"));
        let mut write_seen = false;
        match how {
            Stop::Kill if self.rng.random_bool(0.5) => {
                // Right after the next commit that counted calls, before any scrape shows them.
                let reads = &self.run.as_ref().unwrap().counting_reads;
                let before = reads.load(Ordering::SeqCst);
                let deadline = Instant::now() + SWEEP + Duration::from_secs(2);
                while reads.load(Ordering::SeqCst) == before && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let seen = reads.load(Ordering::SeqCst) > before;
                self.note(&format!(
                    "killing run {no} {}",
                    if seen {
                        "right after a commit that counted calls"
                    } else {
                        "(no commit came)"
                    }
                ));
            }
            Stop::KillMidWrite => {
                // As soon as a state write is seen under way: the temporary file appears, or
                // (it keeps the previous state between writes) is written to.
                let mark = || {
                    use std::os::unix::fs::MetadataExt;
                    std::fs::metadata(&tmp)
                        .ok()
                        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
                };
                let before = mark();
                let deadline = Instant::now() + SWEEP + Duration::from_secs(2);
                while mark() == before && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
                write_seen = mark() != before;
            }
            _ => {
                // At a random moment, mid-poll too.
                let ms = self.rng.random_range(0..900);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let mut run = self.run.take().unwrap();
        let fds_last = fd_count(run.pid).unwrap_or(0);
        let first = run.fds_first.load(Ordering::SeqCst);
        if first > 0 {
            self.tally.fds.push((run.no, first, fds_last));
        }
        let lived = run.started.elapsed().as_secs_f64();
        self.tally.polls_ok += run.polls.load(Ordering::SeqCst);
        match how {
            Stop::Term => {
                signal(run.pid, libc::SIGTERM);
                match wait_exit(&mut run.child, Duration::from_secs(30)).await {
                    Some(s) if s.success() => {}
                    Some(s) => self.fail(&format!("run {no} exited with {s} after SIGTERM")),
                    None => self.fail(&format!("run {no} did not exit within 30 s of SIGTERM")),
                }
            }
            Stop::Kill | Stop::KillMidWrite => {
                signal(run.pid, libc::SIGKILL);
                wait_exit(&mut run.child, Duration::from_secs(30))
                    .await
                    .expect("a killed process exits");
            }
        }
        drop(run);
        if how == Stop::KillMidWrite {
            // What a power loss leaves of a write that had not reached the disk: a part of it.
            // A write that ended before the kill is torn the same way from the last file.
            let bytes = match std::fs::read(&tmp) {
                Ok(b) if write_seen => b,
                _ => std::fs::read(self.state_path()).unwrap_or_default(),
            };
            let met = write_seen;
            let keep = self.rng.random_range(0..=bytes.len());
            std::fs::write(&tmp, &bytes[..keep]).unwrap();
            self.tally.torn_writes.0 += u32::from(met);
            self.tally.torn_writes.1 += 1;
            self.note(&format!(
                "run {no} killed {}; a write torn at {keep} of {} bytes left",
                if met { "mid-write" } else { "after a write" },
                bytes.len()
            ));
        }
        if !state_loads(&self.state_path()) {
            self.fail("the state file is unreadable after a stop");
        }
        let name = match how {
            Stop::Term => "SIGTERM",
            Stop::Kill => "SIGKILL",
            Stop::KillMidWrite => "SIGKILL mid-write",
        };
        *self.tally.stops.entry(name).or_default() += 1;
        for s in last.0.iter().filter(|s| s.name == "ucm_poll_errors_total") {
            let reason = s.labels.get("reason").cloned().unwrap_or_default();
            *self.tally.poll_errors.entry(reason).or_default() += s.value;
        }
        self.note(&format!("run {no} stopped by {name} after {lived:.1} s"));
        self.ledger = counted;
    }

    /// A stop as this soak's kind draws it, after which the next run starts.
    async fn random_stop(&mut self) {
        let how = match self.kind {
            Kind::Graceful => Stop::Term,
            Kind::Kills => match self.rng.random_range(0..20) {
                0..=9 => Stop::Kill,
                10..=14 => Stop::KillMidWrite,
                _ => Stop::Term,
            },
            Kind::OneProcess => unreachable!("one process is never stopped before the end"),
        };
        // A stop in the middle of a login counts as a rejected login in the shared record
        // (docs/design.md §5.1); after one successful login of this run, the record is back at
        // zero, so that such stops can never add up to three in a row.
        self.logged_in().await;
        self.stop(how).await;
        // Down for a moment: calls that end meanwhile are counted by the next run.
        let ms = self.rng.random_range(0..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.spawn().await;
        // Sometimes the next stop comes as soon as the run has logged in: in the middle of the
        // sweep that catches up with what ended while it was down.
        let gap = match self.kind {
            Kind::Kills if self.rng.random_bool(0.3) => 0,
            Kind::Kills => self.rng.random_range(3000..7000),
            _ => self.rng.random_range(4000..10000),
        };
        self.next_stop = Instant::now() + Duration::from_millis(gap);
    }

    fn add_fault(&mut self, fault: Fault, action: Option<&str>, times: Option<u32>) {
        self.sim.add_fault(FaultRule {
            fault,
            action: action.map(str::to_string),
            times,
        });
    }

    async fn inject(&mut self, ev: Event) {
        let label = match ev {
            Event::RateLimit(s) => format!("status {s}"),
            Event::Slow => "slow answer past the timeout".into(),
            Event::InvalidateAfterPages => "session invalidated between pages".into(),
            Event::InvalidateNow => "session invalidated".into(),
            Event::ProxyOutage => "simulator stopped and restarted".into(),
            Event::ClockStep => "clock step".into(),
            Event::ReadOnly => "state dir read-only".into(),
            other => format!("{other:?}"),
        };
        self.note(&format!("inject: {label}"));
        match ev {
            Event::Http500 | Event::Garbage | Event::Truncated | Event::Html403 => {
                let fault = match ev {
                    Event::Http500 => Fault::Http500,
                    Event::Garbage => Fault::Garbage,
                    Event::Truncated => Fault::Truncated,
                    _ => Fault::Html403,
                };
                // Mostly on CDR pages, sometimes on whatever comes next (a login too).
                let action = self.rng.random_bool(0.75).then_some("cdrapi");
                let times = self.rng.random_range(1..=2);
                self.add_fault(fault, action, Some(times));
            }
            Event::Slow => {
                let extra = self.rng.random_range(200..1500);
                let d = REQUEST_TIMEOUT + Duration::from_millis(extra);
                let times = self.rng.random_range(1..=2);
                self.add_fault(Fault::Delay(d), Some("cdrapi"), Some(times));
            }
            Event::RateLimit(status) => {
                self.add_fault(Fault::Status(status), Some("cdrapi"), Some(1));
                // The exporter then sends nothing for 15 s (-45, -46) or 60 s (-57); a restart
                // cuts that short, so that the soak does not idle (the one-process soak sits the
                // back-offs out).
                if self.kind != Kind::OneProcess {
                    let soon =
                        Instant::now() + Duration::from_millis(self.rng.random_range(1000..2500));
                    self.next_stop = self.next_stop.min(soon);
                }
            }
            Event::InvalidateAfterPages => {
                let pages = self.rng.random_range(1..=3);
                self.add_fault(Fault::InvalidateAfterPages(pages), None, None);
            }
            Event::InvalidateNow => self.sim.invalidate_sessions(),
            Event::ProxyOutage => {
                self.proxy.down().await;
                let ms = self.rng.random_range(500..2000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.proxy.up().await;
                self.tally.outages += 1;
            }
            Event::ClockStep => {
                let by = if self.offset == 0 {
                    // Up to 10 minutes forward, or past the host's clock by more than the
                    // watermark's 5-minute slack.
                    let behind = (chrono::Utc::now().naive_utc() - self.sim.now())
                        .num_seconds()
                        .max(0);
                    if self.rng.random_bool(0.3) {
                        behind + self.rng.random_range(330..=600)
                    } else {
                        self.rng.random_range(20..=600)
                    }
                } else {
                    -self.offset
                };
                self.step_clock(by);
            }
            Event::ReadOnly => {
                let ro = ReadOnly::on(&self.state_dir);
                self.tally.ro_how.get_or_insert(ro.how.name());
                self.ro = Some(ro);
                let ms = self.rng.random_range(1200..2500);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.ro = None;
                self.tally.ro_periods += 1;
            }
        }
        if !matches!(ev, Event::ClockStep | Event::ReadOnly | Event::ProxyOutage) {
            self.tally.injected(label);
        }
    }

    fn step_clock(&mut self, by: i64) {
        self.note(&format!("clock step {by:+} s"));
        self.sim.step_clock(chrono::Duration::seconds(by));
        self.offset += by;
        self.tally.clock_steps.push(by);
        let ahead = (self.sim.now() - chrono::Utc::now().naive_utc()).num_seconds();
        if ahead > 300 {
            self.tally.clock_past_slack += 1;
        }
    }

    /// Steps the clock back to the reading it would have without steps.
    fn level_clock(&mut self) {
        if self.offset != 0 {
            self.step_clock(-self.offset);
        }
    }

    /// Two rejected logins in a row, as a mistyped password fixed by the operator would give:
    /// one in the running process, then a restart (which cuts the 60 s back-off short) whose
    /// first login is rejected too, then a restart that logs in. A third rejection in a row
    /// would ration the logins to one an hour (docs/design.md §5.1) and stall the soak.
    async fn login_burst(&mut self) {
        // From a run that is not backing off (a rate limit sends nothing, logins included).
        self.sim.clear_faults();
        if self.kind != Kind::OneProcess {
            self.logged_in().await;
            self.stop(Stop::Term).await;
            self.spawn().await;
        }
        self.scrape_until(Duration::from_secs(120), "a successful poll", |s| {
            s.get("ucm_up", &[]) == Some(1.0)
        })
        .await;
        self.note("inject: failed logins");
        let failures = |s: &Scrape| s.get("ucm_login_failures_total", &[]).unwrap_or(0.0);
        let before = failures(&self.scrape().await);
        self.add_fault(Fault::LoginFails, None, Some(1));
        self.sim.invalidate_sessions();
        self.scrape_until(Duration::from_secs(30), "a rejected login", |s| {
            failures(s) > before
        })
        .await;
        self.tally.login_failures += 1;
        if self.kind == Kind::OneProcess {
            // The back-off (60 s) runs its course in the one process.
            return;
        }
        self.stop(Stop::Term).await;
        self.add_fault(Fault::LoginFails, None, Some(1));
        self.spawn().await;
        self.scrape_until(Duration::from_secs(30), "a rejected first login", |s| {
            failures(s) > 0.0
        })
        .await;
        self.tally.login_failures += 1;
        self.stop(Stop::Term).await;
        self.spawn().await;
        self.logged_in().await;
        self.next_stop = Instant::now() + Duration::from_millis(self.rng.random_range(4000..10000));
    }

    /// Freezes the clock and waits until a sweep that started after that has ended: then every
    /// call visible is counted (the ones lost to a kill aside). A run held back (a 60 s
    /// rate-limit back-off, a login back-off) is replaced by a fresh one, whose first poll is a
    /// sweep.
    async fn settle(&mut self) {
        self.level_clock();
        self.sim.clear_faults();
        self.traffic.pause();
        self.note("clock frozen; waiting for a whole sweep");
        if self.kind == Kind::OneProcess {
            let n = self.sweeps() + 2;
            if !self.sweeps_reach(n, Duration::from_secs(150)).await {
                self.fail("the one process did not sweep twice within 150 s");
            }
            return;
        }
        // A run whose last poll failed may be backing off for up to a minute; one that has not
        // polled yet is fine.
        let now = self.scrape().await;
        let failing = now.get("ucm_up", &[]) == Some(0.0) && now.sum("ucm_poll_errors_total") > 0.0;
        let n = self.sweeps() + 2;
        if !failing && self.sweeps_reach(n, SAFETY_SWEEP * 2 + SWEEP).await {
            return;
        }
        self.note("replacing a run that is failing or backing off");
        self.stop(Stop::Term).await;
        self.spawn().await;
        if !self.sweeps_reach(1, Duration::from_secs(60)).await {
            self.fail("a fresh run did not sweep within 60 s");
        }
    }

    /// The corrupt state file of the kills soak: a settled stop at `t_s`, calls ending while
    /// the exporter is down, garbage written over the state file, and a start that takes a new
    /// baseline at `t_b`. By design the calls that became visible in `(t_s, t_b]` are lost
    /// (none twice): exactly `truth(t_s, t_b)`.
    async fn corrupt_state(&mut self) {
        self.settle().await;
        self.stop(Stop::Term).await;
        let t_s = self.sim.now();
        self.traffic.resume();
        let ms = self.rng.random_range(2000..5000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.traffic.pause();
        let garbage: &[u8] = if self.rng.random_bool(0.5) {
            b"{\"version\":1,\"url\":\"https://127.0.0.1"
        } else {
            b"\x00\x17 not a state file \xff"
        };
        std::fs::write(self.state_path(), garbage).unwrap();
        self.note("state file corrupted");
        self.spawn().await;
        self.up().await;
        let t_b = self.sim.now();
        let aside = self.state_dir.join(format!("{TARGET}.json.bad"));
        assert!(
            aside.exists(),
            "the corrupt state file was not moved aside as {}",
            aside.display()
        );
        self.closed.merge(&self.sim.truth(self.epoch_t0, t_s));
        let lost = self.sim.truth(t_s, t_b);
        self.note(&format!(
            "new baseline at {t_b} (stopped at {t_s}); {} calls that ended while the exporter was down are lost by design",
            lost.total_calls
        ));
        self.tally.corrupt = Some(lost);
        self.epoch_t0 = t_b;
        self.traffic.resume();
        *self
            .tally
            .stops
            .entry("corrupt state restarts")
            .or_default() += 1;
        self.next_stop = Instant::now() + Duration::from_millis(self.rng.random_range(4000..10000));
    }

    /// Samples the one process's RSS and descriptors every 2 s until `stop`.
    fn sample(&self, stop: CancellationToken) -> JoinHandle<Vec<(f64, u64, usize)>> {
        let pid = self.run.as_ref().unwrap().pid;
        let t0 = Instant::now();
        tokio::spawn(async move {
            let mut v = Vec::new();
            loop {
                if let (Some(rss), Some(fds)) = (rss_kib(pid), fd_count(pid)) {
                    v.push((t0.elapsed().as_secs_f64(), rss, fds));
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            v
        })
    }

    /// The whole soak: a baseline on a frozen clock, the fault phase, the settled end; returns
    /// the ground truth of every call counting could have covered.
    async fn soak(&mut self) -> Truth {
        self.spawn().await;
        self.up().await;
        self.epoch_t0 = self.sim.now();
        self.note(&format!("baseline at {}", self.epoch_t0));
        self.traffic.resume();
        let sampler = (self.kind == Kind::OneProcess).then(|| {
            let stop = CancellationToken::new();
            (stop.clone(), self.sample(stop))
        });
        let phase = Duration::from_secs(self.p.secs);
        let start = Instant::now();
        let end = start + phase;
        let mut burst_at = Some(start + phase.mul_f64(self.rng.random_range(0.1..0.5)));
        let mut corrupt_at = (self.kind == Kind::Kills).then(|| start + phase.mul_f64(0.4));
        self.next_stop = start + Duration::from_millis(self.rng.random_range(3000..8000));
        let mut deck: Vec<Event> = Vec::new();
        let mut decks = 0u32;
        while Instant::now() < end {
            let now = Instant::now();
            if corrupt_at.is_some_and(|t| now >= t) {
                corrupt_at = None;
                self.corrupt_state().await;
                continue;
            }
            if burst_at.is_some_and(|t| now >= t) {
                burst_at = None;
                self.login_burst().await;
                continue;
            }
            if self.kind != Kind::OneProcess && now >= self.next_stop {
                self.random_stop().await;
                continue;
            }
            if deck.is_empty() {
                deck = DECK.to_vec();
                // One process cannot cut a back-off short (15 s after -45 and -46, 60 s after
                // -57): one rate limit every tenth deck, or it would spend the soak waiting and
                // send the other faults nothing.
                decks += 1;
                if self.kind == Kind::OneProcess {
                    let status = [-45, -46, -57][(decks / 10 % 3) as usize];
                    deck.retain(|e| match e {
                        Event::RateLimit(s) => decks % 10 == 1 && *s == status,
                        _ => true,
                    });
                }
                deck.shuffle(&mut self.rng);
            }
            let ev = deck.pop().unwrap();
            self.inject(ev).await;
            // About a fault a poll (one every two in the one-process soak), so that polls that
            // fail and polls that count alternate: faults a poll has not met yet pile up. Fast
            // enough that the short form draws every kind of fault.
            let ms = match self.kind {
                Kind::OneProcess => self.rng.random_range(1500..4000),
                _ => self.rng.random_range(500..1500),
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.settle().await;
        if let Some((stop, task)) = sampler {
            stop.cancel();
            self.tally.samples = task.await.unwrap();
        }
        self.stop(Stop::Term).await;
        let mut truth = self.closed.clone();
        truth.merge(&self.sim.truth(self.epoch_t0, self.sim.now()));
        assert!(
            !self.log.panicked.load(Ordering::SeqCst),
            "the exporter panicked; see {}",
            self.log.path.display()
        );
        truth
    }

    /// The counted series summed over runs, checked against the ground truth: equal on every
    /// series, or (`at_most`) never above it. A difference fails the soak with `what` and the
    /// series that differ.
    fn compare(&self, truth: &Truth, at_most: bool, what: &str) -> BTreeMap<String, f64> {
        let got = observed(&self.ledger.scrape());
        let diff = differences(&got, &expected(truth), at_most);
        if !diff.is_empty() {
            self.summary(truth, "FAILED");
            self.fail(&format!("{what}:\n{}", diff.join("\n")));
        }
        got
    }

    /// No run ended with more descriptors open than it had once logged in, give or take
    /// [`FD_SLACK`].
    fn assert_descriptors_flat(&self) {
        for (run, first, last) in &self.tally.fds {
            assert!(
                last <= &(first + FD_SLACK),
                "run {run}: {first} open descriptors once logged in, {last} when stopped"
            );
        }
    }

    fn summary(&self, truth: &Truth, verdict: &str) {
        let counted = observed(&self.ledger.scrape());
        let calls = counted
            .iter()
            .filter(|(k, _)| k.starts_with("ucm_calls_total{"))
            .map(|(_, v)| v)
            .sum::<f64>();
        let legs = counted
            .get("ucm_cdr_records_total{}")
            .copied()
            .unwrap_or(0.0);
        let mut out = format!(
            "\n=== soak {} (window_mode {}, seed {}) ===\n\
             {:.0} s in all, {} s of faults, {} calls/h offered\n\
             counted {calls} calls ({legs} legs) over {} runs; ground truth {} calls ({} legs), {} series\n",
            self.name,
            self.mode,
            self.p.seed,
            self.elapsed(),
            self.p.secs,
            self.p.calls_per_hour,
            self.runs,
            truth.total_calls,
            truth.records,
            expected(truth).len(),
        );
        let stops: Vec<String> = self
            .tally
            .stops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!("stops: {}\n", stops.join(", "));
        let faults: Vec<String> = self
            .tally
            .injected
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!("faults injected: {}\n", faults.join(", "));
        let steps = &self.tally.clock_steps;
        let forward: Vec<i64> = steps.iter().copied().filter(|s| *s > 0).collect();
        let span = |v: &[i64]| match (v.iter().min(), v.iter().max()) {
            (Some(lo), Some(hi)) => format!("{lo}..{hi} s"),
            _ => "none".into(),
        };
        out += &format!(
            "failed logins {}, read-only periods {} ({}), clock steps {} (forward {} then back as \
             much; {} past the host's clock by more than 5 min), simulator outages {}\n",
            self.tally.login_failures,
            self.tally.ro_periods,
            self.tally.ro_how.unwrap_or("none"),
            steps.len(),
            span(&forward),
            self.tally.clock_past_slack,
            self.tally.outages,
        );
        let errors: Vec<String> = self
            .tally
            .poll_errors
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!(
            "polls: {} succeeded, {} failed: {}\n",
            self.tally.polls_ok,
            self.tally.poll_errors.values().sum::<f64>(),
            errors.join(", ")
        );
        out += &format!(
            "calls first shown by the next run (committed after a run's last scrape, continued from \
             the state file): {}; torn state writes left (as by a power loss): {}, {} of them by a \
             kill during the write\n",
            self.tally.recovered, self.tally.torn_writes.1, self.tally.torn_writes.0
        );
        if let Some(lost) = &self.tally.corrupt {
            out += &format!(
                "lost by design to the corrupt state file (ended while the exporter was down): {} calls, {} legs\n",
                lost.total_calls, lost.records
            );
        }
        if !self.tally.fds.is_empty() {
            let growth = self
                .tally
                .fds
                .iter()
                .map(|(_, a, b)| *b as i64 - *a as i64)
                .max()
                .unwrap_or(0);
            let (lo, hi) = self
                .tally
                .fds
                .iter()
                .fold((usize::MAX, 0), |(lo, hi), (_, a, b)| {
                    (lo.min(*a).min(*b), hi.max(*a).max(*b))
                });
            out += &format!(
                "open descriptors per run: {lo}..{hi}, largest growth within a run {growth:+}\n"
            );
        }
        out += verdict;
        eprintln!("{out}");
    }

    /// Runs with RSS within 1.3x and descriptors within a few of where they stood after
    /// warm-up, over a long one-process soak.
    fn check_flat(&self) -> String {
        let s = &self.tally.samples;
        if s.len() < 4 {
            return "too few samples of RSS and descriptors".into();
        }
        let warm = s.len() / 10;
        let rest = &s[warm..];
        let (first, second) = rest.split_at(rest.len() / 2);
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let rss_first = median(&mut first.iter().map(|x| x.1).collect());
        let fds_first = median(&mut first.iter().map(|x| x.2 as u64).collect());
        let rss_max = second.iter().map(|x| x.1).max().unwrap_or(0);
        let fds_max = second.iter().map(|x| x.2 as u64).max().unwrap_or(0);
        let all_max = s.iter().map(|x| x.1).max().unwrap_or(0);
        let line = format!(
            "RSS: first {} KiB, last {} KiB, max {all_max} KiB; median of the first half after warm-up {rss_first} KiB, \
             max of the second half {rss_max} KiB ({:.2}x); descriptors: first {}, last {}, max {}, median of the first half {fds_first}, max of the second half {fds_max}",
            s[0].1,
            s[s.len() - 1].1,
            rss_max as f64 / rss_first as f64,
            s[0].2,
            s[s.len() - 1].2,
            s.iter().map(|x| x.2).max().unwrap_or(0),
        );
        if self.p.secs >= 600 {
            assert!(rss_max as f64 <= 1.3 * rss_first as f64, "RSS grew: {line}");
            assert!(fds_max <= fds_first + 5, "descriptors grew: {line}");
        }
        line
    }
}

/// Every stop a SIGTERM at a random moment, mid-poll too: the counted series, summed as
/// Prometheus sees the runs, equal the ground truth exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_graceful_restarts_count_every_call_exactly_once() {
    let mut soak = Soak::new(
        "soak_graceful_restarts_count_every_call_exactly_once",
        Kind::Graceful,
        "auto",
    )
    .await;
    let truth = soak.soak().await;
    soak.compare(
        &truth,
        false,
        "the sum over runs differs from the ground truth",
    );
    common::assert_matches_truth(&soak.ledger.scrape(), &truth);
    soak.assert_descriptors_flat();
    assert!(truth.total_calls > 0, "no calls ended during the soak");
    soak.summary(
        &truth,
        &format!(
            "no call lost, none counted twice: all {} series equal the ground truth",
            expected(&truth).len()
        ),
    );
}

/// SIGKILLs (right after a commit no scrape saw, and in the middle of a state write, torn as by
/// a power loss) and SIGTERMs at random moments, and a corrupt state file: summed as Prometheus
/// sees the runs, every series equals the ground truth less exactly what the corrupt state file
/// loses by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_kills_and_a_corrupt_state_lose_only_what_the_corrupt_file_held() {
    let mut soak = Soak::new(
        "soak_kills_and_a_corrupt_state_lose_only_what_the_corrupt_file_held",
        Kind::Kills,
        "start",
    )
    .await;
    // The truth leaves out the calls that ended while the exporter was down before the corrupt
    // state file's new baseline.
    let truth = soak.soak().await;
    soak.compare(
        &truth,
        false,
        "the sum over runs differs from the ground truth less the corrupt file's calls",
    );
    common::assert_matches_truth(&soak.ledger.scrape(), &truth);
    let lost = soak
        .tally
        .corrupt
        .as_ref()
        .map(|t| (t.total_calls, t.records))
        .expect("the corrupt state file was tried");
    let kills = soak.tally.stops.get("SIGKILL").copied().unwrap_or(0)
        + soak
            .tally
            .stops
            .get("SIGKILL mid-write")
            .copied()
            .unwrap_or(0);
    assert!(kills > 0, "no run was killed");
    soak.assert_descriptors_flat();
    assert!(truth.total_calls > 0, "no calls ended during the soak");
    soak.summary(
        &truth,
        &format!(
            "all {} series equal the ground truth less the {} calls ({} legs) lost by design to \
             the corrupt state file; none lost to a kill, none counted twice",
            expected(&truth).len(),
            lost.0,
            lost.1
        ),
    );
}

/// The long form's leak check: one process through every fault but restarts, exact at the end,
/// with RSS and open descriptors flat (asserted from 10 minutes of faults on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long form: scripts/soak.sh"]
async fn soak_one_process_under_faults_keeps_memory_and_descriptors_flat() {
    let mut soak = Soak::new(
        "soak_one_process_under_faults_keeps_memory_and_descriptors_flat",
        Kind::OneProcess,
        "auto",
    )
    .await;
    let truth = soak.soak().await;
    soak.compare(&truth, false, "the counts differ from the ground truth");
    common::assert_matches_truth(&soak.ledger.scrape(), &truth);
    let flat = soak.check_flat();
    soak.summary(&truth, &format!("exact on every series; {flat}"));
}
