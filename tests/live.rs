//! The live-status collectors against the simulator over HTTPS: each gauge follows the
//! simulator's state, each refused action disables only its collector, the CDR counts stay
//! exact meanwhile, and a status cycle costs one request per collector (queues: two per queue).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ucm_exporter::cdr::{ExtensionPattern, GroupKind};
use ucm_exporter::config::Collector;
use ucm_exporter::config::{self, Target};
use ucm_exporter::live::{Live, METRICS};
use ucm_exporter::metrics::TargetMetrics;
use ucm_sim::{Fault, FaultRule, Quirks, SimConfig, SimHandle, UptimeFormat};

const MIN: Duration = Duration::from_secs(60);

fn live_target(sim: &SimHandle) -> Target {
    let mut t = target_for(sim, "office");
    t.collectors = Collector::ALL.into_iter().collect();
    t
}

/// The collectors of `target` on the simulator's clock, sharing a session of their own.
fn live(sim: &SimHandle, target: &Target, dir: &std::path::Path) -> (Live, Arc<TargetMetrics>) {
    let (p, metrics) = poller(sim, target.clone(), dir);
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let l = Live::new(target, p.session(), metrics.clone(), ext, sim_clock(sim));
    (l, metrics)
}

fn value(metrics: &TargetMetrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    Scrape::of(metrics).get(name, labels)
}

/// A quiet PBX: only the calls a test places.
fn quiet() -> SimConfig {
    SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(400)
    }
}

#[tokio::test]
async fn every_gauge_follows_the_simulator() {
    let sim = start_sim(quiet()).await;
    let dir = tempfile::tempdir().unwrap();
    let target = live_target(&sim);
    let (mut live, metrics) = live(&sim, &target, dir.path());
    live.run_once().await;
    let scrape = Scrape::of(&metrics);
    for c in Collector::ALL {
        assert_eq!(
            scrape.value("ucm_collector_up", &[("collector", c.as_str())]),
            1.0,
            "{c:?}"
        );
    }
    // Every name the collectors produce is listed for the dashboards' checks, and promtool
    // accepts them.
    let text = String::from_utf8(metrics.text()).unwrap();
    promtool_accepts(&text);
    for name in METRICS {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    let types = |t: &str| -> std::collections::BTreeSet<String> {
        t.lines()
            .filter_map(|l| {
                l.strip_prefix("# TYPE ")?
                    .split(' ')
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    // The call series a listed group gets at 0 are call series, not live status.
    let calls_only = TargetMetrics::new(10);
    calls_only.add_groups([(GroupKind::Queue, "1"), (GroupKind::Ivr, "2")]);
    let without_live = String::from_utf8(calls_only.text()).unwrap();
    for name in types(&text).difference(&types(&without_live)) {
        assert!(
            METRICS.contains(&name.as_str()),
            "{name} is not in live::METRICS"
        );
    }

    // System: booted when the simulator started; a reboot moves it.
    let boot = |m: &TargetMetrics| value(m, "ucm_boot_time_seconds", &[]).unwrap();
    let started = sim.now() - chrono::Duration::from_std(sim.elapsed()).unwrap();
    assert!((boot(&metrics) - started.and_utc().timestamp() as f64).abs() <= 1.0);
    assert!(text.contains("ucm_info{"), "{text}");
    sim.advance(MIN * 90);
    live.run_once().await;
    assert!(
        (boot(&metrics) - started.and_utc().timestamp() as f64).abs() <= 1.0,
        "up-time past an hour"
    );
    sim.reboot();
    live.run_once().await;
    assert!(
        (boot(&metrics) - sim.now().and_utc().timestamp() as f64).abs() <= 1.0,
        "rebooted now"
    );

    // Trunks: all up, then one down within a run, with its status.
    let trunk_up = |m: &TargetMetrics, t: &str| {
        Scrape::of(m).get("ucm_trunk_up", &[("trunk", t), ("type", "register")])
    };
    assert_eq!(trunk_up(&metrics, "Telekom"), Some(1.0));
    sim.set_trunk_status("Telekom", "Rejected");
    live.run_once().await;
    assert_eq!(trunk_up(&metrics, "Telekom"), Some(0.0));
    assert_eq!(
        value(
            &metrics,
            "ucm_trunk_status",
            &[("trunk", "Telekom"), ("status", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ucm_trunk_status",
            &[("trunk", "Telekom"), ("status", "registered")]
        ),
        None,
        "only the current status"
    );
    sim.set_trunk_out_of_service("groff", true);
    live.run_once().await;
    assert_eq!(
        trunk_up(&metrics, "groff"),
        None,
        "a disabled trunk is neither up nor down"
    );
    assert_eq!(
        value(
            &metrics,
            "ucm_trunk_status",
            &[("trunk", "groff"), ("status", "disabled")]
        ),
        Some(1.0)
    );

    // Extensions: one unregistered, one out of service.
    let registered = |m: &TargetMetrics| Scrape::of(m).sum("ucm_extension_registered");
    let before = registered(&metrics);
    sim.set_extension_registered("2003", false);
    sim.set_extension_out_of_service("2005", true);
    live.run_once().await;
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.value("ucm_extension_registered", &[("extension", "2003")]),
        0.0
    );
    assert_eq!(
        scrape.value("ucm_extension_registered", &[("extension", "2005")]),
        0.0
    );
    assert_eq!(registered(&metrics), before - 2.0);
    assert_eq!(
        scrape.value("ucm_extensions", &[("status", "disabled")]),
        1.0
    );
    assert_eq!(
        scrape.sum("ucm_extensions"),
        20.0,
        "every desk extension once"
    );

    // A call's channels appear and go.
    assert_eq!(value(&metrics, "ucm_active_calls", &[]), Some(0.0));
    let start = sim.now() - chrono::Duration::seconds(30);
    sim.add_live_call(flat_call("2010", start, 120, "990001"));
    live.run_once().await;
    assert_eq!(value(&metrics, "ucm_active_calls", &[]), Some(1.0));
    assert_eq!(
        value(&metrics, "ucm_active_channels", &[("state", "bridged")]),
        Some(2.0)
    );
    let oldest = value(&metrics, "ucm_active_call_oldest_seconds", &[]).unwrap();
    assert!(
        (20.0..=30.0).contains(&oldest),
        "bridged 5 s after its start: {oldest}"
    );
    assert_eq!(
        value(&metrics, "ucm_extensions", &[("status", "inuse")]),
        Some(1.0),
        "the caller is in use"
    );
    sim.advance(MIN * 2);
    live.run_once().await;
    assert_eq!(value(&metrics, "ucm_active_calls", &[]), Some(0.0));
    assert_eq!(
        value(&metrics, "ucm_active_call_oldest_seconds", &[]),
        Some(0.0)
    );

    // Storage fills.
    let used =
        |m: &TargetMetrics| value(m, "ucm_storage_used_bytes", &[("partition", "data")]).unwrap();
    sim.set_storage_used("data", 1_000_000);
    live.run_once().await;
    assert_eq!(used(&metrics), 1_000_000.0 * 1024.0);
    assert!(
        value(&metrics, "ucm_storage_size_bytes", &[("partition", "data")]).unwrap()
            >= used(&metrics)
    );
    sim.shutdown().await;
}

/// Queue callers wait, then an agent answers: the waiting gauges follow, in both shapes of
/// `getQueueCalling`.
#[tokio::test]
async fn queue_callers_are_seen_waiting() {
    for array in [false, true] {
        let sim = start_sim(SimConfig {
            quirks: Quirks {
                queue_calling_array: array,
                ..Quirks::default()
            },
            ..busy_sim_config(401)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (mut live, metrics) = live(&sim, &live_target(&sim), dir.path());
        let (mut seen_waiting, mut longest) = (0.0f64, 0.0f64);
        for _ in 0..30 {
            sim.advance(Duration::from_secs(7));
            live.run_once().await;
            let s = Scrape::of(&metrics);
            seen_waiting =
                seen_waiting.max(s.value("ucm_queue_callers_waiting", &[("queue", "6500")]));
            longest = longest.max(s.value("ucm_queue_longest_wait_seconds", &[("queue", "6500")]));
            assert_eq!(s.sum("ucm_queue_members"), 3.0, "three members, each once");
        }
        assert!(
            seen_waiting >= 1.0,
            "a busy morning has queue callers (array {array})"
        );
        assert!(longest > 0.0);
        sim.shutdown().await;
    }
}

/// `up-time` as the firmware writes it: the boot time comes out the same in every form.
#[tokio::test]
async fn boot_time_from_every_uptime_form() {
    for format in [
        UptimeFormat::Hms,
        UptimeFormat::Seconds,
        UptimeFormat::HoursOver24,
        UptimeFormat::DaysWord,
    ] {
        let sim = start_sim(SimConfig {
            quirks: Quirks {
                uptime_format: format,
                ..Quirks::default()
            },
            ..quiet()
        })
        .await;
        sim.advance(Duration::from_secs(26 * 3600 + 3 * 60 + 4));
        let dir = tempfile::tempdir().unwrap();
        let mut target = live_target(&sim);
        target.collectors = [Collector::System].into_iter().collect();
        let (mut live, metrics) = live(&sim, &target, dir.path());
        live.run_once().await;
        let started = sim.now() - chrono::Duration::from_std(sim.elapsed()).unwrap();
        let boot = value(&metrics, "ucm_boot_time_seconds", &[]).expect("boot time");
        assert!(
            (boot - started.and_utc().timestamp() as f64).abs() <= 1.0,
            "{format:?}"
        );
        sim.shutdown().await;
    }
}

/// Each refused action (-47) or unknown one (-1) disables only its collector; the others and
/// the CDR counting go on, exact, with `ucm_up` 1. A refused collector is not asked again
/// within the hour.
#[tokio::test]
async fn a_refused_collector_is_disabled_alone_and_counting_stays_exact() {
    let sim = start_sim(SimConfig {
        quirks: Quirks {
            unknown_actions: vec!["getStorageUsage".into()],
            ..Quirks::default()
        },
        ..busy_sim_config(402)
    })
    .await;
    for action in ["listAllTrunk", "listVoIPTrunk", "getCallQueuesMessage"] {
        sim.add_fault(FaultRule {
            fault: Fault::Status(-47),
            action: Some(action.into()),
            times: None,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let mut target = live_target(&sim);
    target.sweep_interval = MIN * 10;
    let (mut poller, metrics) = poller(&sim, target.clone(), dir.path());
    let mut live = live_for(&sim, &target, &poller, metrics.clone());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    for _ in 0..12 {
        sim.advance(MIN);
        live.run_once().await;
        poller.poll_and_record().await.unwrap();
    }
    let scrape = Scrape::of(&metrics);
    let up = |c: &str| scrape.value("ucm_collector_up", &[("collector", c)]);
    assert_eq!(
        (up("trunks"), up("queues"), up("storage")),
        (0.0, 0.0, 0.0),
        "refused or unknown"
    );
    assert_eq!(
        (up("system"), up("extensions"), up("channels")),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(
        scrape.value(
            "ucm_collector_errors_total",
            &[("collector", "trunks"), ("reason", "permission")]
        ),
        1.0,
        "asked once, then rested"
    );
    assert_eq!(
        scrape.value(
            "ucm_collector_errors_total",
            &[("collector", "storage"), ("reason", "protocol")]
        ),
        1.0
    );
    assert_eq!(
        scrape.get(
            "ucm_trunk_up",
            &[("trunk", "Telekom"), ("type", "register")]
        ),
        None
    );
    assert_eq!(scrape.value("ucm_up", &[]), 1.0);
    sweep_after(&sim, &mut poller, MIN * 10).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    // An hour on, the refused collectors are tried again.
    let stats = sim.stats();
    sim.advance(MIN * 61);
    live.run_once().await;
    let asked = sim
        .stats()
        .requests
        .get("listAllTrunk")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        asked,
        stats.requests.get("listAllTrunk").copied().unwrap_or(0) + 1
    );
    sim.shutdown().await;
}

/// Where `listAllTrunk` is refused, `getSIPTrunk` per trunk gives the status if it carries one.
#[tokio::test]
async fn trunk_status_falls_back_to_get_sip_trunk() {
    let sim = start_sim(SimConfig {
        quirks: Quirks {
            sip_trunk_status: true,
            ..Quirks::default()
        },
        ..quiet()
    })
    .await;
    sim.add_fault(FaultRule {
        fault: Fault::Status(-47),
        action: Some("listAllTrunk".into()),
        times: None,
    });
    sim.set_trunk_status("Daisy", "Unregistered");
    let dir = tempfile::tempdir().unwrap();
    let mut target = live_target(&sim);
    target.collectors = [Collector::Trunks].into_iter().collect();
    let (mut live, metrics) = live(&sim, &target, dir.path());
    live.run_once().await;
    let s = Scrape::of(&metrics);
    assert_eq!(s.value("ucm_collector_up", &[("collector", "trunks")]), 1.0);
    let up = |t: &str| s.get("ucm_trunk_up", &[("trunk", t), ("type", "register")]);
    assert_eq!((up("Daisy"), up("Telekom")), (Some(0.0), Some(1.0)));
    sim.shutdown().await;
}

/// The requests of one status cycle of `live`, per action.
async fn cycle(sim: &SimHandle, live: &mut Live) -> BTreeMap<String, u64> {
    let before = sim.stats().requests;
    live.run_once().await;
    sim.stats()
        .requests
        .iter()
        .map(|(a, n)| (a.clone(), n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The cost of one status cycle, per action: one request per collector, queues one more per
/// queue and list (one queue here). Model and firmware (getSystemGeneralStatus) are asked once
/// per boot of the UCM, and again after an hour.
#[tokio::test]
async fn a_status_cycle_costs_one_request_per_collector_and_queue_list() {
    let sim = start_sim(busy_sim_config(403)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut live, metrics) = live(&sim, &live_target(&sim), dir.path());
    let general = |sent: &BTreeMap<String, u64>| sent.get("getSystemGeneralStatus").copied();
    assert_eq!(general(&cycle(&sim, &mut live).await), Some(1)); // logs in
    let want: BTreeMap<String, u64> = [
        ("getSystemStatus", 1),
        ("listAllTrunk", 1),
        ("listAccount", 1),
        ("listBridgedChannels", 1),
        ("listUnBridgedChannels", 1),
        ("getCallQueuesMessage", 1),
        ("getQueueCalling", 1),
        ("getCallQueuesMemberMessage", 1),
        ("getStorageUsage", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect();
    assert_eq!(cycle(&sim, &mut live).await, want);
    // The model and firmware asked at the first cycle are still shown.
    let info = |m: &TargetMetrics| {
        Scrape::of(m)
            .0
            .into_iter()
            .filter(|s| s.name == "ucm_info")
            .map(|s| s.labels)
            .collect::<Vec<_>>()
    };
    let shown = info(&metrics);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0]["model"].starts_with("UCM6"), "{shown:?}");
    assert!(!shown[0]["firmware"].is_empty(), "{shown:?}");
    // A reboot (as a firmware upgrade does) has them asked again, once.
    sim.advance(MIN * 2);
    sim.reboot();
    assert_eq!(general(&cycle(&sim, &mut live).await), Some(1));
    assert_eq!(general(&cycle(&sim, &mut live).await), None);
    assert_eq!(info(&metrics), shown);
    // As does an hour without a reboot.
    sim.advance(ucm_exporter::live::GENERAL_MAX_AGE + MIN);
    assert_eq!(general(&cycle(&sim, &mut live).await), Some(1));
    assert_eq!(general(&cycle(&sim, &mut live).await), None);
    sim.shutdown().await;
}

/// `check` lists each collector as OK or REFUSED with what to grant.
#[tokio::test]
async fn check_lists_the_collectors() {
    let sim = start_sim(busy_sim_config(404)).await;
    sim.add_fault(FaultRule {
        fault: Fault::Status(-47),
        action: Some("listAccount".into()),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let settings = config::Settings::new(dir.path(), vec![live_target(&sim)]);
    let (lines, ok) = ucm_exporter::check::run(&settings, sim_clock(&sim), false).await;
    assert!(ok, "{lines:?}");
    let text = lines.join("\n");
    assert!(text.contains("collector trunks: OK"), "{text}");
    assert!(
        text.contains("collector extensions: REFUSED") && text.contains("grant listAccount"),
        "{text}"
    );
    sim.shutdown().await;
}

/// A rate limit a status run provokes (-57) rests the collectors beyond the UCM's own wait:
/// once that wait is over, the CDR poll goes first and succeeds while the collectors send
/// nothing, and they run again after their rest. The rest doubles with a rate limit in a row.
#[tokio::test]
async fn a_rate_limit_rests_the_collectors_so_that_cdr_polls_go_first() {
    let sim = start_sim(busy_sim_config(404)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = live_target(&sim);
    let (mut poller, _) = poller(&sim, target.clone(), dir.path());
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let metrics = Arc::new(TargetMetrics::new(config::DEFAULT_EXTENSION_MAX));
    let mut live = Live::new(
        &target,
        poller.session(),
        metrics.clone(),
        ext,
        sim_clock(&sim),
    );
    poller.poll_and_record().await.expect("baseline");
    sim.add_fault(FaultRule {
        fault: Fault::Status(-57),
        action: Some("getSystemStatus".into()),
        times: Some(1),
    });
    live.run_once().await;
    let errors = |m: &TargetMetrics| {
        value(
            m,
            "ucm_collector_errors_total",
            &[("collector", "system"), ("reason", "rate_limited")],
        )
    };
    assert_eq!(errors(&metrics), Some(1.0));
    // The UCM asked for 60 s; after 90 s the CDR poll is served, the collectors still rest.
    sim.advance(Duration::from_secs(90));
    poller
        .poll_and_record()
        .await
        .expect("the CDR poll goes first");
    let before = requests_served(&sim);
    live.run_once().await;
    assert_eq!(requests_served(&sim), before, "the collectors rest");
    // After their rest of 2 minutes they run again, all of them.
    sim.advance(Duration::from_secs(40));
    live.run_once().await;
    assert!(requests_served(&sim) > before);
    assert_eq!(
        value(&metrics, "ucm_collector_up", &[("collector", "system")]),
        Some(1.0)
    );
    // Two rate limits in a row (the first run after a rest meets one again): the second rest
    // is twice the first.
    sim.add_fault(FaultRule {
        fault: Fault::Status(-57),
        action: Some("getSystemStatus".into()),
        times: Some(2),
    });
    sim.advance(Duration::from_secs(30));
    live.run_once().await;
    sim.advance(Duration::from_secs(121));
    live.run_once().await;
    let before = requests_served(&sim);
    sim.advance(Duration::from_secs(180));
    live.run_once().await;
    assert_eq!(
        requests_served(&sim),
        before,
        "still resting, 4 minutes this time"
    );
    sim.advance(Duration::from_secs(61));
    live.run_once().await;
    assert!(requests_served(&sim) > before);
    assert_eq!(errors(&metrics), Some(3.0));
    sim.shutdown().await;
}

/// Queues beyond `max_queues_per_run` are not read, and `ucm_queues_skipped` says how many.
#[tokio::test]
async fn queues_beyond_the_bound_are_skipped_and_counted() {
    let sim = start_sim(busy_sim_config(405)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = live_target(&sim);
    target.collectors = [Collector::Queues].into_iter().collect();
    for (max, read, skipped) in [(20, 1, 0.0), (0, 0, 1.0)] {
        target.max_queues_per_run = max;
        let (mut live, metrics) = live(&sim, &target, dir.path());
        live.run_once().await;
        let before = sim.stats().requests;
        live.run_once().await;
        let after = sim.stats().requests;
        let sent =
            |a: &str| after.get(a).copied().unwrap_or(0) - before.get(a).copied().unwrap_or(0);
        assert_eq!(sent("getCallQueuesMessage"), 1);
        assert_eq!(sent("getQueueCalling"), read, "max {max}");
        assert_eq!(sent("getCallQueuesMemberMessage"), read, "max {max}");
        assert_eq!(value(&metrics, "ucm_queues_skipped", &[]), Some(skipped));
    }
    sim.shutdown().await;
}
