//! End to end with a real Prometheus: the simulator produces live traffic, the exporter polls it,
//! a `prometheus` child process scrapes the exporter every second with `dashboards/alerts.yaml`
//! loaded, and then every PromQL expression of both dashboards and of the rule file is
//! evaluated through Prometheus' HTTP API. A typo in a metric or label name, a syntax error or
//! a wrong aggregation shows up here as an error or an empty result, which a static check
//! cannot see. The call counts Prometheus stores, and the queue, ring group and IVR visits, are
//! compared with the simulator's ground truth.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use common::*;
use serde_json::Value;
use ucm_exporter::config::Settings;
use ucm_sim::{SimConfig, SimHandle};

/// Alert expressions are conditions: with healthy simulated traffic they legitimately return
/// nothing, so for these only validity is asserted. Everything else must return data.
const MAY_BE_EMPTY: [&str; 18] = [
    "UcmUnreachable",
    "UcmLoginFailing",
    "UcmPollingStale",
    "UcmInboundMissedRatioHigh",
    "UcmMissedCallsAboveLastWeek",
    "UcmMissedCallsAboveBaseline",
    "UcmTrunkCallsFailing",
    "UcmTrunkMissedCallsHigh",
    "UcmLoginFailuresBanRisk",
    "UcmCdrWindowMissedCalls",
    "UcmTrunkDown",
    "UcmExtensionsUnregistered",
    "UcmRebooted",
    "UcmQueueWaitHigh",
    "UcmStorageFull",
    "UcmCollectorRefused",
    "UcmQueueAbandonRateHigh",
    "UcmQueueServiceLevelLow",
];

/// Simulated time per step of live traffic, and the wall time between steps: 120x real time.
const STEP: Duration = Duration::from_secs(30);
const STEP_WALL: Duration = Duration::from_millis(250);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Prometheus scraping the exporter at `target` every second, with the rule file loaded.
fn start_prometheus_on(target: &str) -> Daemon {
    let rules = manifest_dir().join("dashboards/alerts.yaml");
    start_prometheus(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: ucm\n    static_configs:\n      - targets: ['{target}']\n",
    ))
}

/// What a `sum by (labels)` query grew by between two instants, per label values, without the
/// label sets that did not move.
async fn increases(
    prom: &Daemon,
    expr: &str,
    labels: &[&str],
    from: f64,
    to: f64,
) -> BTreeMap<Vec<String>, u64> {
    let key = |s: &Value| -> Vec<String> {
        labels
            .iter()
            .map(|k| s["metric"][*k].as_str().unwrap_or("").to_string())
            .collect()
    };
    let before = prom.query(expr, Some(from)).await.unwrap();
    let after = prom.query(expr, Some(to)).await.unwrap();
    let mut diff = BTreeMap::new();
    for s in &after {
        let b = before
            .iter()
            .find(|x| key(x) == key(s))
            .map(sample_value)
            .unwrap_or(0.0);
        let d = sample_value(s) - b;
        if d != 0.0 {
            diff.insert(key(s), d as u64);
        }
    }
    diff
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every expression the dashboards and the rule file hold: (where it comes from, expr, whether
/// it must return data). Grafana variable queries `label_values(sel, label)` become
/// `count by (label) (sel)`, which returns data exactly when the variable has values.
fn expressions() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for file in ["ucm-overview.json", "ucm-extensions.json"] {
        let text = std::fs::read_to_string(manifest_dir().join("dashboards").join(file)).unwrap();
        let d: Value = serde_json::from_str(&text).unwrap();
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["definition"].as_str() {
                let inner = &q["label_values(".len()..q.len() - 1];
                let (sel, label) = inner.rsplit_once(',').unwrap();
                out.push((
                    format!("{file} variable {}", v["name"]),
                    format!("count by ({}) ({sel})", label.trim()),
                    true,
                ));
            }
        }
        let mut panels: Vec<&Value> = Vec::new();
        for p in d["panels"].as_array().unwrap() {
            panels.push(p);
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("{file} panel {} {}", p["title"], t["refId"]),
                    t["expr"].as_str().unwrap().to_string(),
                    true,
                ));
            }
        }
    }
    let text = std::fs::read_to_string(manifest_dir().join("dashboards/alerts.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let expr = r["expr"].as_str().unwrap().to_string();
            match (r["record"].as_str(), r["alert"].as_str()) {
                (Some(name), _) => out.push((format!("recording rule {name}"), expr, true)),
                (_, Some(name)) => {
                    assert!(MAY_BE_EMPTY.contains(&name), "{name} not listed");
                    out.push((format!("alert {name}"), expr, false))
                }
                _ => panic!("rule without record or alert"),
            }
        }
    }
    out
}

/// Fills in Grafana's variables as a dashboard would with the given selections.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut e = expr.to_string();
    for (k, v) in vars {
        e = e.replace(k, v);
    }
    assert!(!e.contains('$'), "a Grafana variable is left in {e}");
    e
}

/// Moves the simulated clock forward in steps until stopped, as live traffic.
fn live_traffic(sim: SimHandle, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            sim.advance(STEP);
            tokio::time::sleep(STEP_WALL).await;
        }
    })
}

/// Stops traffic, waits until the exporter shows every call that ended by then and Prometheus
/// has scraped that, and returns (sim time, Unix time at which Prometheus holds that value).
async fn settle(
    sim: &SimHandle,
    prom: &Daemon,
    exporter_base: &str,
    since: NaiveDateTime,
) -> (NaiveDateTime, f64, u64) {
    let at = sim.now();
    let want = sim.truth(since, at).total_calls;
    wait_for_calls(
        &format!("{exporter_base}/metrics"),
        want,
        Duration::from_secs(20),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = prom.scalar("sum(ucm_calls_total)", None).await;
        if seen == Some(want as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus shows {seen:?} calls, exporter {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (at, unix_now(), want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_evaluate_on_a_real_prometheus_and_match_ground_truth() {
    let started = Instant::now();
    let sim = start_sim(SimConfig {
        seed: 44,
        start_time: Some(office_morning()),
        clock_speed: 0.0,
        history: Duration::from_secs(2 * 3600),
        calls_per_hour: 900.0,
        ..SimConfig::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.poll_interval = Duration::from_millis(300);
    // Every poll re-reads the whole max_call_duration window, so a long call is counted as soon
    // as it ends and the counts equal the ground truth at any settled moment.
    target.sweep_interval = Duration::ZERO;
    let settings = Settings::new(state.path(), vec![target]);
    let (running, exporter_base) = start_exporter(settings, &sim).await;
    // The first poll took a baseline of everything visible now: counting starts here.
    let t0 = sim.now();

    let mut prom = start_prometheus_on(&running.addr().to_string());
    prom.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while prom.scalar("ucm_up", None).await != Some(1.0) {
        assert!(Instant::now() < deadline, "no ucm_up 1 scraped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Traffic, a settled moment A, more traffic, a settled moment B.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = live_traffic(sim.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    let (sim_a, unix_a, total_a) = settle(&sim, &prom, &exporter_base, t0).await;
    // Two more scrapes at A's value, so the first sample after unix_a still holds it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(false, Ordering::SeqCst);
    let traffic = live_traffic(sim.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    let (sim_b, unix_b, total_b) = settle(&sim, &prom, &exporter_base, t0).await;

    // Exact: the difference of two instant values equals the truth of what ended in between.
    let truth = sim.truth(sim_a, sim_b);
    assert!(
        truth.total_calls > 300,
        "enough traffic: {}",
        truth.total_calls
    );
    assert_eq!(total_b - total_a, truth.total_calls);
    let at = |t| {
        prom.query(
            "sum by (direction, trunk, disposition) (ucm_calls_total)",
            Some(t),
        )
    };
    let (before, after) = (at(unix_a).await.unwrap(), at(unix_b).await.unwrap());
    let key = |s: &Value| {
        let l = &s["metric"];
        let f = |k: &str| l[k].as_str().unwrap_or("").to_string();
        (f("direction"), f("trunk"), f("disposition"))
    };
    let mut diff = std::collections::BTreeMap::new();
    for s in &after {
        let b = before
            .iter()
            .find(|x| key(x) == key(s))
            .map(sample_value)
            .unwrap_or(0.0);
        let d = sample_value(s) - b;
        if d != 0.0 {
            diff.insert(key(s), d as u64);
        }
    }
    let want: std::collections::BTreeMap<_, _> = truth
        .calls
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert_eq!(
        diff, want,
        "calls by label between A and B, Prometheus vs truth"
    );

    // Queue, ring group and IVR visits between A and B, the same way: calls by outcome, the
    // members rung, and the answered-within-20-s bucket the service-level rule reads.
    for kind in ["queue", "ringgroup"] {
        assert!(
            truth.group_calls.keys().any(|(k, _, _)| k == kind),
            "no {kind} visits between A and B: {:?}",
            truth.group_calls
        );
    }
    assert!(!truth.ivr_calls.is_empty(), "no IVR visits between A and B");
    // Truth keys as lists, without zeros, as `increases` gives them.
    fn listed<K>(
        m: &BTreeMap<K, u64>,
        key: impl Fn(&K) -> Vec<String>,
    ) -> BTreeMap<Vec<String>, u64> {
        m.iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, n)| (key(k), *n))
            .collect()
    }
    let group_calls = listed(&truth.group_calls, |(k, g, o)| {
        vec![k.clone(), g.clone(), o.clone()]
    });
    let within_20s = listed(
        &truth
            .group_wait_within
            .iter()
            .filter(|((.., threshold), _)| *threshold == 20)
            .map(|((k, g, o, _), n)| ((k.clone(), g.clone(), o.clone()), *n))
            .collect(),
        |(k, g, o)| vec![k.clone(), g.clone(), o.clone()],
    );
    let members = listed(&truth.group_members, |(k, g, e, o)| {
        vec![k.clone(), g.clone(), e.clone(), o.clone()]
    });
    let ivr_calls = listed(&truth.ivr_calls, |(i, o)| vec![i.clone(), o.clone()]);
    for (what, expr, labels, want) in [
        (
            "group calls",
            "sum by (kind, group, outcome) (ucm_group_calls_total)",
            &["kind", "group", "outcome"][..],
            group_calls,
        ),
        (
            "group waits within 20 s",
            r#"sum by (kind, group, outcome) (ucm_group_wait_seconds_bucket{le="20"})"#,
            &["kind", "group", "outcome"][..],
            within_20s,
        ),
        (
            "group members",
            "sum by (kind, group, extension, outcome) (ucm_group_member_calls_total)",
            &["kind", "group", "extension", "outcome"][..],
            members,
        ),
        (
            "IVR calls",
            "sum by (ivr, outcome) (ucm_ivr_calls_total)",
            &["ivr", "outcome"][..],
            ivr_calls,
        ),
    ] {
        let got = increases(&prom, expr, labels, unix_a, unix_b).await;
        assert_eq!(got, want, "{what} between A and B, Prometheus vs truth");
    }

    // increase() over exactly [A, B]: the first and last samples in the window hold A's and B's
    // values, so the raw delta is exact; Prometheus then extrapolates it from the sampled span
    // (at least the window minus a scrape interval at each end, 1 s each, 3 s with jitter) to at
    // most the whole window. Hence exact <= increase <= exact * window / (window - 3 s).
    let window = unix_b - unix_a;
    let inc = prom
        .scalar(
            &format!(
                "sum(increase(ucm_calls_total[{}ms]))",
                (window * 1000.0) as u64
            ),
            Some(unix_b),
        )
        .await
        .unwrap();
    let exact = truth.total_calls as f64;
    assert!(
        inc >= exact - 1e-6 && inc <= exact * window / (window - 3.0),
        "increase() {inc} vs exact {exact} over {window:.1} s"
    );

    // Live traffic again while every expression is evaluated, so rates over the last minute
    // see calls on every trunk and extension.
    stop.store(false, Ordering::SeqCst);
    let traffic = live_traffic(sim.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;

    let rules: Value = {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/rules", prom.base))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    };
    let mut loaded = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            loaded += 1;
            assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
        }
    }
    assert_eq!(loaded, 29, "rules loaded by Prometheus");

    let instance = running.addr().to_string();
    let top: Vec<String> = prom
        .query(
            "topk(3, sum by (extension) (ucm_extension_calls_total))",
            None,
        )
        .await
        .unwrap()
        .iter()
        .map(|s| s["metric"]["extension"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(top.len(), 3, "extensions seen: {top:?}");
    let extensions = top.join("|");
    // The overview's queue variable, with every queue the exporter shows selected.
    let queues: Vec<String> = prom
        .query(
            r#"count by (group) (ucm_group_calls_total{kind="queue"})"#,
            None,
        )
        .await
        .unwrap()
        .iter()
        .map(|s| s["metric"]["group"].as_str().unwrap().to_string())
        .collect();
    assert!(!queues.is_empty(), "no queue seen");
    let queues = queues.join("|");
    let vars = [
        ("$__rate_interval", "1m"),
        ("$__range", "5m"),
        ("$__interval", "15s"),
        ("$job", "ucm"),
        ("$instance", instance.as_str()),
        ("$trunk", ".*"),
        ("$extension", extensions.as_str()),
        ("$group", queues.as_str()),
    ];
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for (origin, expr, must_have_data) in expressions() {
        let e = substitute(&expr, &vars);
        evaluated += 1;
        match prom.query(&e, None).await {
            Err(err) => failures.push(format!("{origin}: invalid: {err}\n    {e}")),
            Ok(r) if must_have_data && r.is_empty() => {
                failures.push(format!("{origin}: no data\n    {e}"))
            }
            Ok(_) => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {evaluated} expressions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(evaluated >= 60, "only {evaluated} expressions");
    let mut visits: BTreeMap<String, u64> = BTreeMap::new();
    for ((kind, _, outcome), n) in &truth.group_calls {
        *visits.entry(format!("{kind} {outcome}")).or_default() += n;
    }
    for ((_, outcome), n) in &truth.ivr_calls {
        *visits.entry(format!("ivr {outcome}")).or_default() += n;
    }
    eprintln!(
        "evaluated {evaluated} expressions; {} calls between A and B, group visits {visits:?}; {:.1} s",
        truth.total_calls,
        started.elapsed().as_secs_f64()
    );

    drop(prom);
    running.shutdown().await;
    sim.shutdown().await;
}
