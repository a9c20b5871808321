//! Shared pieces of the exporter's integration tests: a simulated UCM over HTTPS on 127.0.0.1,
//! targets pointing at it, and a reader of the text exposition to compare with ground truth.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use ucm_exporter::cdr::ExtensionPattern;
use ucm_exporter::clock::SharedClock;
use ucm_exporter::config::{self, Secret, Target};
use ucm_exporter::demo::SimTime;
use ucm_exporter::metrics::TargetMetrics;
use ucm_exporter::poll::{PollKind, Poller};
use ucm_sim::{self as sim, SimConfig, SimHandle, Truth};

/// A fixed busy office hour (UTC). Tests that run the exporter in-process give it the
/// simulator's clock ([`SimTime`]), so nothing they see depends on the date they run.
pub fn office_morning() -> NaiveDateTime {
    NaiveDateTime::parse_from_str("2026-03-04 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap()
}

/// The exporter on the simulator's clock (see [`SimTime`]).
pub fn sim_clock(sim: &SimHandle) -> SharedClock {
    SimTime::shared(sim)
}

/// A simulator at the host's real time, frozen, for tests that run the exporter binary (which
/// reads the host clock). What they assert holds on any date: equality with ground truth.
pub fn live_sim_config(seed: u64) -> SimConfig {
    SimConfig {
        start_time: None,
        ..busy_sim_config(seed)
    }
}

/// A frozen-clock simulator with dense traffic, so windows need paging.
pub fn busy_sim_config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        start_time: Some(office_morning()),
        clock_speed: 0.0,
        history: Duration::from_secs(6 * 3600),
        calls_per_hour: 2000.0,
        ..SimConfig::default()
    }
}

pub async fn start_sim(cfg: SimConfig) -> SimHandle {
    // RUST_LOG=ucm_exporter=debug shows the exporter's log lines of a failing test. The
    // journal (`/probe?debug=true`) has its own level, as in the binary.
    use tracing_subscriber::prelude::*;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
        )
        .with(ucm_exporter::journal::layer())
        .try_init();
    sim::start(cfg).await.expect("simulator starts")
}

pub fn target_for(sim: &SimHandle, name: &str) -> Target {
    let mut t = Target::new(
        name,
        sim.url(),
        "cdrapi",
        Secret::new(SimConfig::default().password),
    );
    t.poll_interval = Duration::from_millis(200);
    t.sweep_interval = Duration::from_secs(3600);
    t.request_timeout = Duration::from_secs(5);
    t.ca_file = Some(sim.ca_path());
    // The start windows, whose overlap and sweeps most tests exercise; tests/windows.rs runs
    // the ground truth in the fast modes.
    t.window_mode = config::WindowPreference::Start;
    t
}

/// A poller of `target` on the simulator's clock.
pub fn poller(sim: &SimHandle, target: Target, state_dir: &Path) -> (Poller, Arc<TargetMetrics>) {
    let metrics = Arc::new(TargetMetrics::new(config::DEFAULT_EXTENSION_MAX));
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let p = Poller::new(target, metrics.clone(), ext, state_dir, sim_clock(sim))
        .expect("poller builds");
    (p, metrics)
}

/// The live-status collectors of `poller`'s target: its session, the UCM clock it reads times
/// with, and `metrics` for their series.
pub fn live_for(
    sim: &SimHandle,
    target: &Target,
    poller: &Poller,
    metrics: Arc<TargetMetrics>,
) -> ucm_exporter::live::Live {
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    ucm_exporter::live::Live::new(target, poller.session(), metrics, ext, sim_clock(sim))
        .with_ucm_clock(poller.ucm_clock())
}

/// Polls once, expecting a failure; its `reason` label.
pub async fn poll_error(poller: &mut Poller) -> &'static str {
    let err = poller.poll_and_record().await.expect_err("the poll fails");
    err.reason().as_str()
}

/// Polls `times` times, `every` apart on the simulator's clock.
pub async fn poll_every(sim: &SimHandle, poller: &mut Poller, every: Duration, times: usize) {
    for _ in 0..times {
        sim.advance(every);
        poller.poll_and_record().await.expect("poll");
    }
}

/// Moves the clock by `after` and polls: that poll must be a sweep, after which every call that
/// ended is counted.
pub async fn sweep_after(sim: &SimHandle, poller: &mut Poller, after: Duration) {
    sim.advance(after);
    let r = poller.poll_and_record().await.expect("sweep");
    assert_eq!(r.kind, PollKind::Sweep, "{r:?}");
}

/// One sample of the text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Scrape(pub Vec<Sample>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value.parse().expect("numeric sample value");
            let (name, labels) = match series.find('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some(i) => {
                    let body = &series[i + 1..series.len() - 1];
                    let mut labels = BTreeMap::new();
                    let mut rest = body;
                    while !rest.is_empty() {
                        let eq = rest.find("=\"").expect("label has =\"");
                        let key = rest[..eq].trim_start_matches(',').to_string();
                        let after = &rest[eq + 2..];
                        let mut val = String::new();
                        let mut chars = after.char_indices();
                        let mut end = after.len();
                        while let Some((j, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, n)) = chars.next() {
                                        val.push(if n == 'n' { '\n' } else { n });
                                    }
                                }
                                '"' => {
                                    end = j + 1;
                                    break;
                                }
                                c => val.push(c),
                            }
                        }
                        labels.insert(key, val);
                        rest = &after[end..];
                    }
                    (series[..i].to_string(), labels)
                }
            };
            out.push(Sample {
                name,
                labels,
                value,
            });
        }
        Scrape(out)
    }

    pub fn of(metrics: &TargetMetrics) -> Scrape {
        Scrape::parse(&String::from_utf8(metrics.text()).unwrap())
    }

    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    /// Non-zero samples of `name`, keyed by the given labels in order.
    pub fn by(&self, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let mut m = BTreeMap::new();
        for s in self.0.iter().filter(|s| s.name == name && s.value != 0.0) {
            let k = keys
                .iter()
                .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
                .collect();
            *m.entry(k).or_insert(0.0) += s.value;
        }
        m
    }

    /// Answered calls placed from `ext` (what [`flat_call`] makes), `None` before the first.
    pub fn answered_from(&self, ext: &str) -> Option<f64> {
        self.get(
            "ucm_extension_calls_total",
            &[
                ("extension", ext),
                ("role", "caller"),
                ("disposition", "answered"),
            ],
        )
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn keyed3(m: &BTreeMap<(String, String, String), u64>) -> BTreeMap<Vec<String>, f64> {
    m.iter()
        .filter(|(_, v)| **v != 0)
        .map(|((a, b, c), v)| (vec![a.clone(), b.clone(), c.clone()], *v as f64))
        .collect()
}

fn keyed2<V: Copy>(
    m: &BTreeMap<(String, String), V>,
    f: impl Fn(V) -> u64,
) -> BTreeMap<Vec<String>, f64> {
    m.iter()
        .filter(|(_, v)| f(**v) != 0)
        .map(|((a, b), v)| (vec![a.clone(), b.clone()], f(*v) as f64))
        .collect()
}

/// Asserts that every call metric of a scrape equals the simulator's ground truth exactly.
pub fn assert_matches_truth(scrape: &Scrape, truth: &Truth) {
    assert_eq!(
        scrape.by("ucm_calls_total", &["direction", "trunk", "disposition"]),
        keyed3(&truth.calls),
        "ucm_calls_total differs from ground truth"
    );
    assert_eq!(scrape.sum("ucm_calls_total") as u64, truth.total_calls);
    assert_eq!(
        scrape.by("ucm_call_talk_seconds_count", &["direction", "trunk"]),
        keyed2(&truth.talk, |(n, _)| n),
        "talk-time histogram counts differ"
    );
    assert_eq!(
        scrape.by("ucm_call_talk_seconds_sum", &["direction", "trunk"]),
        keyed2(&truth.talk, |(_, s)| s),
        "talk-time sums differ"
    );
    let wait_counts: BTreeMap<_, _> = truth
        .wait
        .iter()
        .map(|(k, (n, _))| (k.clone(), *n))
        .collect();
    let wait_sums: BTreeMap<_, _> = truth
        .wait
        .iter()
        .map(|(k, (_, s))| (k.clone(), *s))
        .collect();
    assert_eq!(
        scrape.by(
            "ucm_call_wait_seconds_count",
            &["direction", "trunk", "disposition"]
        ),
        keyed3(&wait_counts),
        "wait-time histogram counts differ"
    );
    assert_eq!(
        scrape.by(
            "ucm_call_wait_seconds_sum",
            &["direction", "trunk", "disposition"]
        ),
        keyed3(&wait_sums),
        "wait-time sums differ"
    );
    assert_eq!(
        scrape.by(
            "ucm_extension_calls_total",
            &["extension", "role", "disposition"]
        ),
        keyed3(&truth.extension_calls),
        "per-extension call counts differ"
    );
    assert_eq!(
        scrape.by("ucm_extension_talk_seconds_total", &["extension", "role"]),
        keyed2(&truth.extension_talk, |s| s),
        "per-extension talk seconds differ"
    );
    assert_eq!(
        scrape.value("ucm_cdr_records_total", &[]) as u64,
        truth.records,
        "ucm_cdr_records_total differs"
    );
    assert_groups_match_truth(scrape, truth);
}

/// The queue, ring group and IVR series of a scrape equal the ground truth exactly, including
/// the service-level buckets.
pub fn assert_groups_match_truth(scrape: &Scrape, truth: &Truth) {
    const KGO: [&str; 3] = ["kind", "group", "outcome"];
    assert_eq!(
        scrape.by("ucm_group_calls_total", &KGO),
        keyed3(&truth.group_calls),
        "ucm_group_calls_total differs from ground truth"
    );
    let part = |f: fn(&(u64, u64)) -> u64| -> BTreeMap<_, _> {
        truth
            .group_wait
            .iter()
            .map(|(k, v)| (k.clone(), f(v)))
            .collect()
    };
    assert_eq!(
        scrape.by("ucm_group_wait_seconds_count", &KGO),
        keyed3(&part(|v| v.0)),
        "group wait counts differ"
    );
    assert_eq!(
        scrape.by("ucm_group_wait_seconds_sum", &KGO),
        keyed3(&part(|v| v.1)),
        "group wait sums differ"
    );
    let levels: Vec<String> = ucm_sim::SERVICE_LEVELS.iter().map(u64::to_string).collect();
    let within: BTreeMap<Vec<String>, f64> = scrape
        .by(
            "ucm_group_wait_seconds_bucket",
            &["kind", "group", "outcome", "le"],
        )
        .into_iter()
        .filter(|(k, _)| levels.contains(&k[3]))
        .collect();
    let want: BTreeMap<Vec<String>, f64> = truth
        .group_wait_within
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|((k, g, o, l), n)| {
            (
                vec![k.clone(), g.clone(), o.clone(), l.to_string()],
                *n as f64,
            )
        })
        .collect();
    assert_eq!(within, want, "service-level buckets differ");
    let members: BTreeMap<Vec<String>, f64> = truth
        .group_members
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|((k, g, e, o), n)| (vec![k.clone(), g.clone(), e.clone(), o.clone()], *n as f64))
        .collect();
    assert_eq!(
        scrape.by(
            "ucm_group_member_calls_total",
            &["kind", "group", "extension", "outcome"]
        ),
        members,
        "group member counts differ"
    );
    assert_eq!(
        scrape.by("ucm_ivr_calls_total", &["ivr", "outcome"]),
        keyed2(&truth.ivr_calls, |n| n),
        "ucm_ivr_calls_total differs"
    );
}

/// GETs a URL of the exporter with a plain client.
pub async fn get(url: &str) -> reqwest::Response {
    ucm_exporter::ucm::install_crypto_provider();
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("exporter answers")
}

/// A flat internal call from `ext` to 2001, starting `start` and lasting `secs`, with a uniqueid
/// whose epoch is `start` read as UTC (the simulators of these tests run in UTC).
pub fn flat_call(ext: &str, start: NaiveDateTime, secs: i64, id: &str) -> serde_json::Value {
    let at = |d: i64| {
        (start + chrono::Duration::seconds(d))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    serde_json::json!({
        "AcctId": id, "src": ext, "dst": "2001", "channel": format!("PJSIP/{ext}-00aa"),
        "dstchannel": "PJSIP/2001-00ab", "lastapp": "Dial", "start": at(0), "answer": at(5),
        "end": at(secs), "duration": secs.to_string(), "billsec": (secs - 5).to_string(),
        "disposition": "ANSWERED", "userfield": "Internal", "channel_ext": ext,
        "dstchannel_ext": "2001", "session": format!("s-{id}"), "src_trunk_name": "",
        "dst_trunk_name": "", "uniqueid": format!("{}.{id}", start.and_utc().timestamp())
    })
}

/// promtool (Debian package `prometheus`) must accept the exposition without a word.
pub fn promtool_accepts(plain: &str) {
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(plain.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        })
        .expect("promtool is needed by this test: install Debian's `prometheus` package (the README's test command does)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed: {said}");
    assert_eq!(said, "", "promtool check metrics should print nothing");
}

/// A server child process (Prometheus, Alertmanager) on a port of 127.0.0.1, killed when dropped
/// so that a failing test never leaves it running. Its files live in a temporary directory
/// removed with it; its log is `daemon.log` there.
pub struct Daemon {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Runs the first of `programs` that exists on a free port of 127.0.0.1 with `config` in
    /// its `--config.file`, its data under `storage_flag` in the temporary directory, and
    /// `extra` arguments; `hint` says which Debian package to install when none exists.
    pub fn start(
        programs: &[&str],
        hint: &str,
        config: &str,
        storage_flag: &str,
        extra: &[&str],
    ) -> Daemon {
        Self::start_on(
            tempfile::tempdir().unwrap(),
            programs,
            hint,
            config,
            storage_flag,
            extra,
        )
    }

    /// As [`Daemon::start`], in `dir`, whose `data` may already hold data (TSDB blocks).
    pub fn start_on(
        dir: tempfile::TempDir,
        programs: &[&str],
        hint: &str,
        config: &str,
        storage_flag: &str,
        extra: &[&str],
    ) -> Daemon {
        // The port is free when asked; another process could take it before the daemon binds
        // it, which would show as an early exit with "address already in use" in the log.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let program = programs
            .iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .unwrap_or_else(|| panic!("none of {programs:?} runs. {hint}"));
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "{storage_flag}={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}. {hint}"));
        Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Waits for `/-/ready` (Prometheus and Alertmanager both answer it).
    pub async fn wait_ready(&mut self) {
        ucm_exporter::ucm::install_crypto_provider();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", self.base, self.log());
            }
            if let Ok(r) = client.get(format!("{}/-/ready", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} not ready after 30 s:\n{}", self.base, self.log());
    }

    /// Evaluates `expr` at `time` (Unix seconds; None = now) on a Prometheus; Err is its error.
    pub async fn query(
        &self,
        expr: &str,
        time: Option<f64>,
    ) -> Result<Vec<serde_json::Value>, String> {
        let mut form = vec![("query", expr.to_string())];
        if let Some(t) = time {
            form.push(("time", format!("{t:.3}")));
        }
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.base), &form)
            .expect("valid URL");
        let text = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect("prometheus answers")
            .text()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        assert_eq!(body["data"]["resultType"], "vector", "{expr}");
        Ok(body["data"]["result"].as_array().unwrap().clone())
    }

    /// The value of a query that returns a single sample.
    pub async fn scalar(&self, expr: &str, time: Option<f64>) -> Option<f64> {
        let r = self
            .query(expr, time)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match r.as_slice() {
            [] => None,
            [one] => Some(sample_value(one)),
            _ => panic!("{expr} returned {} samples", r.len()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample of a Prometheus query result.
pub fn sample_value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

pub const PROMETHEUS_HINT: &str = "the prometheus binary is needed by this test: install Debian \
     package prometheus (apt-get install prometheus; scripts/test.sh installs it)";

/// A Prometheus server with `config` (YAML), its TSDB in the daemon's directory.
pub fn start_prometheus(config: &str) -> Daemon {
    Daemon::start(
        &["prometheus"],
        PROMETHEUS_HINT,
        config,
        "--storage.tsdb.path",
        &[],
    )
}

/// A Prometheus server that scrapes nothing, on the TSDB blocks `fill` writes into the
/// directory it is given (e.g. with `promtool tsdb create-blocks-from`).
pub fn start_prometheus_on_blocks(fill: impl FnOnce(&Path)) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    fill(&data);
    Daemon::start_on(
        dir,
        &["prometheus"],
        PROMETHEUS_HINT,
        "global:\n  scrape_interval: 1m\n",
        "--storage.tsdb.path",
        &[],
    )
}

/// The exporter in-process on `sim`'s clock, listening on a port of 127.0.0.1, once it is
/// ready (every target has finished its first poll): it and its base URL.
pub async fn start_exporter(
    settings: ucm_exporter::config::Settings,
    sim: &SimHandle,
) -> (ucm_exporter::exporter::Running, String) {
    let running = ucm_exporter::exporter::Exporter::new(settings)
        .listen("127.0.0.1:0")
        .clock(sim_clock(sim))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    wait_exporter_ready(&base).await;
    (running, base)
}

/// Waits until the exporter at `base` answers `/-/ready` with 200.
pub async fn wait_exporter_ready(base: &str) {
    for i in 0.. {
        if get(&format!("{base}/-/ready")).await.status() == 200 {
            return;
        }
        assert!(i < 200, "the exporter never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the calls a scrape of `url` shows add up to `want` (the ground truth), failing
/// after `patience` with the count it last saw.
pub async fn wait_for_calls(url: &str, want: u64, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let text = get(url).await.text().await.unwrap();
        let got = Scrape::parse(&text).sum("ucm_calls_total") as u64;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} shows {got} calls, truth {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const CDR_TIME: &str = "%Y-%m-%d %H:%M:%S";

/// Every `start` of a `cdr_root` entry, its legs' and its summary's.
pub fn entry_starts(v: &serde_json::Value, out: &mut Vec<NaiveDateTime>) {
    if let serde_json::Value::Object(m) = v {
        for (k, x) in m {
            match (k.as_str(), x) {
                ("start", serde_json::Value::String(s)) => {
                    out.extend(NaiveDateTime::parse_from_str(s, CDR_TIME).ok())
                }
                (_, serde_json::Value::Object(_)) => entry_starts(x, out),
                _ => {}
            }
        }
    }
}

/// Moves every start/answer/end of an entry by `delta`, keeping the call's inner timing; empty
/// times stay empty.
pub fn shift_entry(v: &mut serde_json::Value, delta: chrono::Duration) {
    if let serde_json::Value::Object(m) = v {
        for (k, x) in m.iter_mut() {
            match (k.as_str(), &*x) {
                ("start" | "answer" | "end", serde_json::Value::String(s)) => {
                    if let Ok(t) = NaiveDateTime::parse_from_str(s, CDR_TIME) {
                        *x = serde_json::Value::String((t + delta).format(CDR_TIME).to_string());
                    }
                }
                (_, serde_json::Value::Object(_)) => shift_entry(x, delta),
                _ => {}
            }
        }
    }
}

/// Every request the simulator has answered (or refused), logins included.
pub fn requests_served(sim: &SimHandle) -> u64 {
    sim.stats().requests.values().sum()
}

/// Polls once and checks the poll's requests against its budget: what the simulator saw of
/// them never exceeds what `ucm_poll_request_budget` allowed. Returns the poll's result and the
/// requests it sent. Only for pollers without live-status collectors, whose requests the
/// simulator would count too.
pub async fn poll_within_budget(
    sim: &SimHandle,
    poller: &mut Poller,
    metrics: &TargetMetrics,
) -> (
    Result<ucm_exporter::poll::PollReport, ucm_exporter::error::UcmError>,
    u64,
) {
    let before = requests_served(sim);
    let result = poller.poll_and_record().await;
    let sent = requests_served(sim) - before;
    let scrape = Scrape::of(metrics);
    let budget = scrape.value("ucm_poll_request_budget", &[]);
    // A read-ahead aborted before it left may be taken from the budget and never arrive.
    let taken = scrape.value("ucm_poll_requests", &[]);
    assert!(
        sent as f64 <= taken,
        "{sent} requests arrived, {taken} taken"
    );
    assert!(
        taken <= budget,
        "{taken} requests, budget {budget}: {result:?}"
    );
    (result, sent)
}
