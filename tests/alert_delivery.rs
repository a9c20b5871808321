//! Alert delivery end to end: two simulated UCMs, the exporter polling both, a real Prometheus
//! with the rules of `dashboards/alerts.yaml`, and a real Alertmanager with
//! `deploy/alertmanager.yml`, delivering to a webhook receiver served by this test. The
//! simulator makes the incidents: a missed-call spike on one trunk of `office`, and on `branch`
//! a trunk going down and a queue whose callers give up. What arrives must be what the shipped
//! routing promises a person: the right alerts on their severity's receiver, one notification
//! per UCM, labels and annotations that say which UCM, trunk or queue and how many calls, a
//! runbook link, and a resolved notification once an incident is over.
//!
//! Time: the exporter runs on the simulators' clock, which the test moves, so an hour of calls
//! takes seconds. Prometheus and Alertmanager run on the wall clock: the test's copy of the rules
//! shortens only the `for:` durations (the promtool unit tests of `dashboards/alerts.test.yaml`
//! hold the shipped ones), and its copy of the Alertmanager file only the group waits. The rate
//! windows stay: everything the test makes falls within them, and a spike ends when enough
//! answered calls bring the missed share under the threshold, as a real spike's end does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Timelike;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use ucm_exporter::config::Settings;
use ucm_sim::{BurstOutcome, SimConfig, SimHandle};

const ALERTMANAGER_HINT: &str = "the Alertmanager is needed by this test: install Debian package \
     prometheus-alertmanager (apt-get install prometheus-alertmanager; scripts/test.sh installs it)";

const RUNBOOK: &str = "https://github.com/ucm-exporter/ucm-exporter/blob/main/README.md#";

/// How long any one expected delivery may take: generous, since the machine may be loaded; a
/// delivery normally takes 5 to 10 s (scrape, evaluation, `for:`, group wait).
const DELIVERY: Duration = Duration::from_secs(45);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One POST the webhook received: the receiver's path and the notification.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    body: Value,
}

/// A webhook receiver on 127.0.0.1 that keeps every notification POSTed to it.
struct Webhook {
    base: String,
    got: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start() -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let sink = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body)
                                .unwrap_or_else(|e| json!({"unreadable": e.to_string()}));
                            sink.lock().unwrap().push(Delivery { path, body });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Webhook { base, got, task }
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for the first notification that `pick` accepts, failing with everything received
    /// so far after [`DELIVERY`].
    async fn wait_for(&self, what: &str, pick: impl Fn(&Delivery) -> bool) -> Delivery {
        let deadline = Instant::now() + DELIVERY;
        loop {
            if let Some(d) = self.all().into_iter().find(&pick) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no notification {what} within {DELIVERY:?}; received:\n{:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Webhook {
    /// The first notification on `path` for UCM `instance` in which all of `names` fire; it
    /// must hold no other firing alert.
    async fn firing(&self, path: &str, instance: &str, names: &[&str]) -> Delivery {
        let d = self
            .wait_for(&format!("of {names:?} for {instance} on {path}"), |d| {
                let f = alerts(d, "firing");
                for_ucm(d, path, instance) && names.iter().all(|n| f.contains_key(*n))
            })
            .await;
        assert_eq!(
            alerts(&d, "firing").keys().collect::<Vec<_>>(),
            names,
            "firing for {instance}"
        );
        assert_eq!(
            d.body["receiver"],
            format!("ucm-{}", path.rsplit('/').next().unwrap())
        );
        d
    }

    /// Waits until every alert of `names` has been notified resolved on `path` for UCM
    /// `instance`: Alertmanager reports each once, in the group's next notification after it
    /// resolves, so alerts that resolve an evaluation apart may come in two. The last of them
    /// must say the whole group is resolved.
    async fn resolved(&self, path: &str, instance: &str, names: &[&str]) {
        let deadline = Instant::now() + DELIVERY;
        loop {
            let ucm: Vec<Delivery> = self
                .all()
                .into_iter()
                .filter(|d| for_ucm(d, path, instance))
                .collect();
            let done: BTreeSet<String> = ucm
                .iter()
                .flat_map(|d| alerts(d, "resolved").into_keys())
                .collect();
            if names.iter().all(|n| done.contains(*n)) {
                let last = ucm.last().unwrap();
                assert_eq!(last.body["status"], "resolved", "{last:#?}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{names:?} of {instance} not resolved within {DELIVERY:?}; received:\n{:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The alerts of a notification with `status` (firing or resolved), by alert name.
fn alerts<'a>(d: &'a Delivery, status: &str) -> BTreeMap<String, &'a Value> {
    d.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == status)
        .map(|a| (a["labels"]["alertname"].as_str().unwrap().to_string(), a))
        .collect()
}

fn for_ucm(d: &Delivery, path: &str, instance: &str) -> bool {
    d.path == path && d.body["groupLabels"] == json!({"job": "ucm", "instance": instance})
}

/// The number a summary or description opens with: how many calls.
fn leading_count(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count opens {text:?}"))
}

/// increase() extrapolates the span Prometheus has sampled to the window's edges, by at most
/// about a scrape interval (250 ms) at each end; over the 10 s or more it has sampled before an
/// incident, that adds under 5 %: a person reads the exact count or one more.
fn assert_count(said: f64, exact: u64, what: &str) {
    assert!(
        said == exact as f64 || said == exact as f64 + 1.0,
        "{what}: the alert says {said}, the simulator made {exact}"
    );
}

/// The rule file with every `for:` shortened to 2 s and nothing else changed.
fn rules_with_short_for() -> String {
    let shipped = std::fs::read_to_string(manifest_dir().join("dashboards/alerts.yaml")).unwrap();
    let pattern = regex::Regex::new(r"(?m)^(\s+)for: \d+[smh]\b.*$").unwrap();
    let short = pattern.replace_all(&shipped, "${1}for: 2s").into_owned();
    assert_eq!(
        pattern.find_iter(&shipped).count(),
        shipped.matches("\n        for: ").count(),
        "every for: line is shortened"
    );
    short
}

/// `deploy/alertmanager.yml` with the receivers' host replaced by the webhook and the group
/// waits shortened; routes, grouping, repeats and inhibition as shipped.
fn alertmanager_config(webhook: &str) -> String {
    let shipped = std::fs::read_to_string(manifest_dir().join("deploy/alertmanager.yml")).unwrap();
    assert!(shipped.contains("http://alert-receiver.example:9000/"));
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&shipped.replace("http://alert-receiver.example:9000", webhook))
            .unwrap();
    fn shorten(route: &mut serde_yaml::Value) {
        let m = route.as_mapping_mut().unwrap();
        for key in ["group_wait", "group_interval"] {
            if m.contains_key(key) {
                m.insert(key.into(), "1s".into());
            }
        }
        if let Some(routes) = m.get_mut("routes") {
            routes
                .as_sequence_mut()
                .unwrap()
                .iter_mut()
                .for_each(shorten);
        }
    }
    shorten(&mut doc["route"]);
    serde_yaml::to_string(&doc).unwrap()
}

fn start_alertmanager(config: &str) -> Daemon {
    Daemon::start(
        &["prometheus-alertmanager", "alertmanager"],
        ALERTMANAGER_HINT,
        config,
        "--storage.path",
        // No cluster: it would listen on 0.0.0.0:9094.
        &["--cluster.listen-address="],
    )
}

/// Both simulators show one clock reading, which the exporter reads: they move together.
fn advance(sims: &[&SimHandle], by: Duration) {
    for s in sims {
        s.advance(by);
    }
}

/// Waits until the exporter shows every call of `sim` that ended since `since` (its poll
/// baseline), as the ground truth counts them.
async fn settle(exporter: &str, name: &str, sim: &SimHandle, since: chrono::NaiveDateTime) {
    let want = sim.truth(since, sim.now()).total_calls;
    let url = format!("{exporter}/probe?target={name}");
    wait_for_calls(&url, want, Duration::from_secs(30)).await;
}

/// A simulated UCM with no traffic of its own: every call comes from the test's bursts, so the
/// counts are exact. Its clock starts half an hour behind the host's, so that it booted well
/// over the 15 minutes of UcmRebooted before Prometheus looks (Prometheus reads the wall clock).
async fn quiet_ucm(start: chrono::NaiveDateTime) -> SimHandle {
    start_sim(SimConfig {
        start_time: Some(start),
        clock_speed: 0.0,
        calls_per_hour: 0.0,
        ..SimConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_receiver_grouped_per_ucm_with_what_to_act_on() {
    let started = Instant::now();
    let start = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .naive_utc()
        .with_nanosecond(0)
        .unwrap();
    let office = quiet_ucm(start).await;
    let branch = quiet_ucm(start).await;
    let both = [&office, &branch];
    // Forty minutes on: the clock the exporter reads is then ahead of the host's, so no poll
    // looks stale to Prometheus' time().
    advance(&both, Duration::from_secs(40 * 60));

    let state = tempfile::tempdir().unwrap();
    let targets = [("office", &office), ("branch", &branch)]
        .into_iter()
        .map(|(name, sim)| {
            let mut t = target_for(sim, name);
            t.poll_interval = Duration::from_millis(200);
            // Every poll re-reads the whole window: a call counts as soon as it has ended.
            t.sweep_interval = Duration::ZERO;
            t.status_interval = Duration::from_secs(1);
            t
        })
        .collect();
    let (running, exporter) = start_exporter(Settings::new(state.path(), targets), &office).await;
    let since = office.now();

    // A quiet morning before Prometheus looks: a few calls of every kind, so the series exist
    // when it first scrapes them, as on any UCM that has been running.
    for sim in both {
        for outcome in [
            BurstOutcome::Answered,
            BurstOutcome::Missed,
            BurstOutcome::Abandoned,
        ] {
            sim.burst(outcome, None, 3, Duration::from_secs(60));
        }
    }
    // Ten minutes: the longest of these calls (5 minutes of talk) has ended.
    advance(&both, Duration::from_secs(10 * 60));
    for (name, sim) in [("office", &office), ("branch", &branch)] {
        settle(&exporter, name, sim, since).await;
    }

    let webhook = Webhook::start().await;
    let mut am = start_alertmanager(&alertmanager_config(&webhook.base));
    let am_addr = am.base.trim_start_matches("http://").to_string();
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("alerts.yaml");
    std::fs::write(&rules, rules_with_short_for()).unwrap();
    let mut prom = start_prometheus(&format!(
        "global:\n  scrape_interval: 250ms\n  scrape_timeout: 250ms\n  evaluation_interval: 500ms\n\
         rule_files:\n  - {rules:?}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_addr}']\n\
         scrape_configs:\n  - job_name: ucm\n    metrics_path: /probe\n\
         \x20   static_configs:\n      - targets: [office, branch]\n\
         \x20   relabel_configs:\n\
         \x20     - source_labels: [__address__]\n        target_label: __param_target\n\
         \x20     - source_labels: [__param_target]\n        target_label: instance\n\
         \x20     - target_label: __address__\n        replacement: '{}'\n",
        running.addr()
    ));
    am.wait_ready().await;
    prom.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom.scalar("count(ucm_up == 1)", None).await != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw both UCMs up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ten seconds of the quiet state sampled (see `assert_count`).
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .scalar("min(count_over_time(ucm_up[1m]))", None)
        .await
        .is_none_or(|n| n < 40.0)
    {
        assert!(Instant::now() < deadline, "Prometheus scrapes too slowly");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Inhibition, through the shipped rules: a UCM that cannot be polled has its trunk alert
    // held back. Sent straight to Alertmanager as Prometheus would; `lab` is no simulated UCM.
    let lab = |name: &str, extra: Value| {
        let mut labels =
            json!({"alertname": name, "job": "ucm", "instance": "lab", "severity": "critical"});
        labels
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"labels": labels, "annotations": {"summary": name}})
    };
    let posted = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.base))
        .header("content-type", "application/json")
        .body(
            json!([
                lab("UcmUnreachable", json!({})),
                lab(
                    "UcmTrunkDown",
                    json!({"trunk": "Telekom", "type": "register"})
                )
            ])
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{posted:?}");

    // The incidents, at once; each on its own UCM and receiver, so each is its own notification.
    branch.set_trunk_status("groff", "Unreachable");
    let spike_from = office.now();
    office.burst(
        BurstOutcome::Missed,
        Some("Telekom"),
        24,
        Duration::from_secs(600),
    );
    let queue_from = branch.now();
    branch.burst(BurstOutcome::Abandoned, None, 15, Duration::from_secs(600));
    // Fifteen minutes at once: every call of both bursts has ended by the next poll (the last
    // starts at 9:20 and waits at most 3 minutes in the queue), so an alert's first value
    // counts them all.
    advance(&both, Duration::from_secs(15 * 60));
    let spike = office.truth(spike_from, office.now());
    let abandoned = branch.truth(queue_from, branch.now());
    for (name, sim) in [("office", &office), ("branch", &branch)] {
        settle(&exporter, name, sim, since).await;
    }
    let missed_on_telekom = spike.calls[&(
        "inbound".to_string(),
        "Telekom".to_string(),
        "no_answer".to_string(),
    )];
    assert_eq!(missed_on_telekom, 24);
    let queue_abandoned = abandoned.group_calls[&(
        "queue".to_string(),
        ucm_sim::QUEUE.0.to_string(),
        "abandoned".to_string(),
    )];
    assert_eq!(queue_abandoned, 15);

    // The trunk down: critical, on its own, for branch.
    let down = webhook
        .firing("/ucm/critical", "branch", &["UcmTrunkDown"])
        .await;
    let firing = alerts(&down, "firing");
    let a = firing["UcmTrunkDown"];
    assert_eq!(a["labels"]["trunk"], "groff");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["annotations"]["summary"],
        "Trunk groff of UCM branch is down."
    );
    assert_eq!(
        a["annotations"]["runbook_url"],
        format!("{RUNBOOK}ucmtrunkdown")
    );

    // The spike: the trunk alert names Telekom and how many calls; the UCM-wide share is over
    // its threshold too, and both come in office's one warning notification.
    let spiked = webhook
        .firing(
            "/ucm/warning",
            "office",
            &["UcmInboundMissedRatioHigh", "UcmTrunkMissedCallsHigh"],
        )
        .await;
    let firing = alerts(&spiked, "firing");
    let a = firing["UcmTrunkMissedCallsHigh"];
    assert_eq!(a["labels"]["trunk"], "Telekom");
    assert_eq!(a["labels"]["instance"], "office");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.ends_with(
            "inbound calls on trunk Telekom of UCM office went unanswered in 15 minutes."
        ),
        "{summary}"
    );
    assert_count(leading_count(summary), missed_on_telekom, "missed calls");
    assert_eq!(
        a["annotations"]["runbook_url"],
        format!("{RUNBOOK}ucmtrunkmissedcallshigh")
    );
    for (name, a) in &firing {
        assert_eq!(a["labels"]["severity"], "warning", "{name}");
        assert_eq!(
            a["annotations"]["runbook_url"],
            format!("{RUNBOOK}{}", name.to_lowercase())
        );
    }

    // The queue: branch's warning notification names queue 6500 and how many callers gave up.
    let queue = webhook
        .firing(
            "/ucm/warning",
            "branch",
            &["UcmQueueAbandonRateHigh", "UcmQueueServiceLevelLow"],
        )
        .await;
    let firing = alerts(&queue, "firing");
    for a in firing.values() {
        assert_eq!(a["labels"]["group"], ucm_sim::QUEUE.0);
        assert_eq!(a["labels"]["kind"], "queue");
    }
    let a = firing["UcmQueueAbandonRateHigh"];
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("callers hung up while waiting in queue 6500 of UCM branch"),
        "{description}"
    );
    assert_count(
        leading_count(description),
        queue_abandoned,
        "abandoned calls",
    );
    assert_eq!(
        a["annotations"]["runbook_url"],
        format!("{RUNBOOK}ucmqueueabandonratehigh")
    );

    // The inhibited trunk alert of `lab` is held back while its UCM is unreachable.
    let lab_note = webhook
        .wait_for("of UcmUnreachable for lab", |d| {
            for_ucm(d, "/ucm/critical", "lab")
        })
        .await;
    assert_eq!(
        alerts(&lab_note, "firing").keys().collect::<Vec<_>>(),
        ["UcmUnreachable"],
        "UcmTrunkDown of an unreachable UCM is inhibited"
    );
    let am_alerts: Value = serde_json::from_str(
        &reqwest::get(format!(
            "{}/api/v2/alerts?filter=instance=%22lab%22",
            am.base
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let trunk_down = am_alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "UcmTrunkDown")
        .expect("Alertmanager holds lab's UcmTrunkDown");
    assert_eq!(trunk_down["status"]["state"], "suppressed", "{trunk_down}");
    assert!(!trunk_down["status"]["inhibitedBy"]
        .as_array()
        .unwrap()
        .is_empty());

    // The incidents end: the trunk registers again, and office's Telekom calls are answered
    // again until the missed shares are under their thresholds (24 of 114 calls: 21 %).
    branch.set_trunk_status("groff", "Registered");
    office.burst(
        BurstOutcome::Answered,
        Some("Telekom"),
        90,
        Duration::from_secs(1800),
    );
    // The last starts at 29:40 and talks at most 5 minutes after a short ring.
    advance(&both, Duration::from_secs(40 * 60));
    settle(&exporter, "office", &office, since).await;
    webhook
        .resolved("/ucm/critical", "branch", &["UcmTrunkDown"])
        .await;
    webhook
        .resolved(
            "/ucm/warning",
            "office",
            &["UcmInboundMissedRatioHigh", "UcmTrunkMissedCallsHigh"],
        )
        .await;

    // Nothing else reached a person: every notification is one of the above, on its receiver.
    let expected: BTreeSet<(String, String, String)> = [
        ("/ucm/critical", "branch", "UcmTrunkDown"),
        ("/ucm/critical", "lab", "UcmUnreachable"),
        ("/ucm/warning", "office", "UcmTrunkMissedCallsHigh"),
        ("/ucm/warning", "office", "UcmInboundMissedRatioHigh"),
        ("/ucm/warning", "branch", "UcmQueueAbandonRateHigh"),
        ("/ucm/warning", "branch", "UcmQueueServiceLevelLow"),
    ]
    .into_iter()
    .map(|(p, i, a)| (p.to_string(), i.to_string(), a.to_string()))
    .collect();
    let received: BTreeSet<(String, String, String)> = webhook
        .all()
        .iter()
        .flat_map(|d| {
            let path = d.path.clone();
            d.body["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |a| {
                    (
                        path.clone(),
                        a["labels"]["instance"].as_str().unwrap_or("").to_string(),
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(received, expected, "alerts delivered");
    for d in webhook.all() {
        let instance = d.body["groupLabels"]["instance"].as_str().unwrap_or("");
        for a in d.body["alerts"].as_array().unwrap() {
            assert_eq!(
                a["labels"]["instance"], instance,
                "one UCM per notification"
            );
        }
    }

    eprintln!(
        "alert delivery: {} notifications in {:.1} s",
        webhook.all().len(),
        started.elapsed().as_secs_f64()
    );
    drop(prom);
    drop(am);
    running.shutdown().await;
    office.shutdown().await;
    branch.shutdown().await;
}
