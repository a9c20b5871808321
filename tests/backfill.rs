//! `ucm-exporter backfill`, the real binary against the simulator over HTTPS: a simulated week
//! (across a change to summer time) written as OpenMetrics, stopped and resumed, turned into
//! TSDB blocks by the real `promtool tsdb create-blocks-from openmetrics`, served by a real
//! Prometheus, and `increase()` of each day compared with the simulator's own count of the
//! calls that started that day, per direction, trunk and disposition.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use common::*;
use ucm_sim::{Fault, FaultRule, SimConfig, SimHandle, Truth};

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");
const ZONE: chrono_tz::Tz = chrono_tz::Europe::Paris;
/// A week whose Sunday (2024-03-31) has 23 hours in Paris.
const FROM: &str = "2024-03-25";
const TO: &str = "2024-04-01";
const DAYS: i64 = 7;

fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn day(d: i64) -> NaiveDateTime {
    at(&format!("{FROM} 00:00:00")) + chrono::Duration::days(d)
}

/// Unix time of a time of the UCM's clock.
fn unix(t: NaiveDateTime) -> i64 {
    ZONE.from_local_datetime(&t).earliest().unwrap().timestamp()
}

/// A frozen UCM in Paris, seven hours into the Monday after the week, with eight days of history
/// (so that the first poll's baseline, 28 hours back, lies after the night's spring-forward gap).
fn sim_config() -> SimConfig {
    SimConfig {
        seed: 24,
        timezone: ZONE,
        start_time: Some(at("2024-04-01 07:00:00")),
        clock_speed: 0.0,
        history: Duration::from_secs(8 * 24 * 3600),
        calls_per_hour: 120.0,
        ..SimConfig::default()
    }
}

/// The exporter's config file for target `office` at `sim`, its state in `dir/state`.
fn config(dir: &Path, sim: &SimHandle, password: &str) -> PathBuf {
    std::fs::write(dir.join("password"), format!("{password}\n")).unwrap();
    let cfg = format!(
        "state_dir: {}\ntargets:\n  - name: office\n    url: {}\n    username: cdrapi\n    password_file: {}\n    \
         timezone: {ZONE}\n    tls:\n      ca_file: {}\n",
        dir.join("state").display(),
        sim.url(),
        dir.join("password").display(),
        sim.ca_path().display()
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn backfill(cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["backfill", "--config.file"])
        .arg(cfg)
        .args(["--target", "office"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs the binary to its end off the runtime's threads, which serve the simulator.
async fn finish(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child process killed if the test fails first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a backfill and kills it (SIGKILL: no chance to tidy up) once it has written
/// `days` days, while the UCM answers slowly, so that it is stopped in the middle of a day.
async fn run_and_kill(sim: &SimHandle, cmd: Command, days: usize) {
    sim.add_fault(FaultRule {
        fault: Fault::Delay(Duration::from_millis(300)),
        action: Some("cdrapi".into()),
        times: None,
    });
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let mut child = Running(cmd.spawn().expect("the binary starts"));
        let stderr = child.0.stderr.take().unwrap();
        let mut written = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            written += usize::from(line.contains("backfilled"));
            if written == days {
                break;
            }
        }
        assert_eq!(written, days, "the backfill ended before it was stopped");
        drop(child);
    })
    .await
    .unwrap();
    sim.clear_faults();
}

/// Truth's calls without the zero counts.
fn calls_of(t: &Truth) -> BTreeMap<Vec<String>, f64> {
    t.calls
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|((d, t, s), n)| (vec![d.clone(), t.clone(), s.clone()], *n as f64))
        .collect()
}

/// `increase()` by `labels` over `[from, to)` of the UCM's clock, evaluated at its end with a
/// range of exactly its length: every series has samples at both ends, so nothing is
/// extrapolated and each value must be a whole number.
async fn increase(
    prom: &Daemon,
    metric: &str,
    labels: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> BTreeMap<Vec<String>, f64> {
    let range = unix(to) - unix(from);
    let expr = format!(
        "sum by ({}) (increase({metric}{{instance=\"office\"}}[{range}s])) > 0",
        labels.join(",")
    );
    let result = prom.query(&expr, Some(unix(to) as f64)).await.unwrap();
    result
        .iter()
        .map(|s| {
            let v = sample_value(s);
            assert!(
                (v - v.round()).abs() < 1e-9,
                "{expr} at {to}: {v} is extrapolated"
            );
            let key = labels
                .iter()
                .map(|l| s["metric"][l].as_str().unwrap_or("").to_string())
                .collect();
            (key, v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_week_in_prometheus_counts_each_day_as_the_ucm_does() {
    let sim = start_sim(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, "cdrapi-secret");
    let args = |out: &Path| {
        let out = out.to_str().unwrap().to_string();
        let v = [
            "--from",
            FROM,
            "--to",
            TO,
            "--step",
            "1h",
            "--label",
            "instance=office",
            "--output",
        ];
        let mut a: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        a.push(out);
        a
    };
    let run = |out: &Path| {
        let a = args(out);
        backfill(&cfg, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Stopped after two days, in the middle of the third; then run again to its end.
    let resumed = dir.path().join("resumed.om");
    run_and_kill(&sim, run(&resumed), 2).await;
    let partial = std::fs::read_to_string(&resumed).unwrap();
    assert!(!partial.contains("# EOF"), "stopped before its end");
    let before = sim.stats().requests.get("cdrapi").copied().unwrap_or(0);
    let o = finish(run(&resumed)).await;
    assert!(o.status.success(), "{}", said(&o));
    assert!(said(&o).contains("resuming the backfill"), "{}", said(&o));
    let resumed_requests = sim.stats().requests["cdrapi"] - before;
    let o = finish(run(&resumed)).await;
    assert!(
        o.status.success() && said(&o).contains("complete already"),
        "{}",
        said(&o)
    );

    // The same week in one go: the same file, byte for byte.
    let whole = dir.path().join("whole.om");
    let before = sim.stats().requests["cdrapi"];
    let o = finish(run(&whole)).await;
    assert!(o.status.success(), "{}", said(&o));
    let whole_requests = sim.stats().requests["cdrapi"] - before;
    let text = std::fs::read_to_string(&whole).unwrap();
    assert!(
        text == std::fs::read_to_string(&resumed).unwrap(),
        "the resumed run wrote another file"
    );
    assert!(text.ends_with("# EOF\n"));
    // The resumed run read the days the first one had not finished, not the week again.
    assert!(
        resumed_requests < whole_requests,
        "{resumed_requests} vs {whole_requests}"
    );

    let blocks = |data: &Path| {
        let out = Command::new("promtool")
            // Blocks of a day: promtool reads the file once per block.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
            ])
            .arg(&whole)
            .arg(data)
            .output()
            .expect("promtool is needed by this test: install Debian's `prometheus` package");
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut prom = start_prometheus_on_blocks(blocks);
    prom.wait_ready().await;

    let mut total = 0.0;
    for d in 0..DAYS {
        let (from, to) = (day(d), day(d + 1));
        let truth = sim.truth_started_within(from, to);
        assert!(
            truth.total_calls > 100,
            "{from}: {} calls",
            truth.total_calls
        );
        let got = increase(
            &prom,
            "ucm_calls_total",
            &["direction", "trunk", "disposition"],
            from,
            to,
        )
        .await;
        assert_eq!(got, calls_of(&truth), "calls of {from}");
        // The histograms too: answered calls and their talk seconds per trunk.
        let want: BTreeMap<Vec<String>, f64> = truth
            .talk
            .iter()
            .filter(|(_, (n, _))| *n > 0)
            .map(|((d, t), (n, _))| (vec![d.clone(), t.clone()], *n as f64))
            .collect();
        let got = increase(
            &prom,
            "ucm_call_talk_seconds_count",
            &["direction", "trunk"],
            from,
            to,
        )
        .await;
        assert_eq!(got, want, "answered calls of {from}");
        let want: BTreeMap<Vec<String>, f64> = truth
            .talk
            .iter()
            .filter(|(_, (_, s))| *s > 0)
            .map(|((d, t), (_, s))| (vec![d.clone(), t.clone()], *s as f64))
            .collect();
        let got = increase(
            &prom,
            "ucm_call_talk_seconds_sum",
            &["direction", "trunk"],
            from,
            to,
        )
        .await;
        assert_eq!(got, want, "talk seconds of {from}");
        total += truth.total_calls as f64;
    }
    assert_eq!(
        unix(day(7)) - unix(day(6)),
        23 * 3600,
        "the week has its short day"
    );
    let week = increase(&prom, "ucm_calls_total", &[], day(0), day(DAYS)).await;
    assert_eq!(week.values().sum::<f64>(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_to_the_backfill_ends_where_the_live_counters_begin() {
    let sim = start_sim(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, "cdrapi-secret");
    // Without poll state there is no end to take.
    let o = finish(backfill(&cfg, &["--from", FROM, "--output", "/dev/null"])).await;
    assert!(
        !o.status.success() && said(&o).contains("give --to"),
        "{}",
        said(&o)
    );

    // The exporter's first poll: its baseline counts nothing that started before its start.
    let mut target = target_for(&sim, "office");
    target.timezone = Some(ZONE);
    let (mut poller, _) = poller(&sim, target, &dir.path().join("state"));
    poller.poll_and_record().await.expect("baseline");
    let baseline = poller.state().unwrap().baseline_start;
    drop(poller);
    let baseline = ucm_exporter::clock::from_local_secs(baseline);
    let from = baseline - chrono::Duration::days(2);

    let out = dir.path().join("handover.om");
    let from_text = from.format("%Y-%m-%dT%H:%M:%S").to_string();
    let o = finish(backfill(
        &cfg,
        &["--from", &from_text, "--output", out.to_str().unwrap()],
    ))
    .await;
    assert!(o.status.success(), "{}", said(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut last = 0;
    let mut finals: BTreeMap<&str, f64> = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = l.rsplitn(3, ' ');
        let (t, v, key) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        last = last.max(t.parse::<i64>().unwrap());
        if key.starts_with("ucm_calls_total") {
            finals.insert(key, v.parse().unwrap());
        }
    }
    assert_eq!(
        last,
        unix(baseline),
        "the last sample is at the baseline's start"
    );
    let truth = sim.truth_started_within(from, baseline);
    assert_eq!(finals.values().sum::<f64>(), truth.total_calls as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_a_refused_login_are_clear_errors() {
    let sim = start_sim(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, "cdrapi-secret");
    let out = dir.path().join("out.om");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--from", "2024-03-32", "--to", TO], "is not a date"),
        (&["--from", TO, "--to", FROM], "is not before --to"),
        (&["--from", FROM, "--to", "2999-01-01"], "in the future"),
        (
            &["--from", FROM, "--to", TO, "--label", "1x=a"],
            "not a label name",
        ),
        (&["--from", FROM, "--to", TO, "--step", "0s"], "at least 1s"),
    ];
    for (args, want) in cases {
        let mut a = args.to_vec();
        a.extend(["--output", out]);
        let o = finish(backfill(&cfg, &a)).await;
        assert!(
            !o.status.success() && said(&o).contains(want),
            "{args:?}: {}",
            said(&o)
        );
    }
    let mut c = backfill(&cfg, &["--from", FROM, "--to", TO, "--output", out]);
    let argv: Vec<String> = c
        .get_args()
        .map(|a| a.to_string_lossy().replace("office", "attic"))
        .collect();
    c = Command::new(BIN);
    c.args(argv);
    let o = finish(c).await;
    assert!(
        !o.status.success() && said(&o).contains("no target named \"attic\""),
        "{}",
        said(&o)
    );

    // A wrong password: the UCM refuses the login, and nothing is written.
    let wrong = tempfile::tempdir().unwrap();
    let cfg = config(wrong.path(), &sim, "not-the-password");
    let o = finish(backfill(
        &cfg,
        &["--from", FROM, "--to", TO, "--output", out],
    ))
    .await;
    assert!(!o.status.success(), "{}", said(&o));
    assert!(said(&o).to_lowercase().contains("login"), "{}", said(&o));
    assert_eq!(std::fs::read_to_string(out).unwrap_or_default(), "");
}
