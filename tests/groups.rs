//! Queue, ring group and IVR outcomes against the simulator over HTTPS: over a busy run in
//! which every outcome occurs, each group series equals the simulator's own ground truth; group
//! names come from the UCM's lists, and a refused list leaves only the numbers.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ucm_exporter::cdr::ExtensionPattern;
use ucm_exporter::config::Collector;
use ucm_exporter::config::Target;
use ucm_exporter::live::{Live, GROUP_NAMES_INTERVAL};
use ucm_exporter::metrics::TargetMetrics;
use ucm_sim::{Fault, FaultRule, SimConfig, SimHandle, GROUP_NAMES};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_group_outcome_equals_the_ground_truth_over_a_busy_run() {
    let sim = start_sim(busy_sim_config(1414)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    // The baseline counts nothing that started before it; the calls of the next hours count.
    poller.poll_and_record().await.expect("baseline");
    let from = sim.now();
    poll_every(&sim, &mut poller, MIN, 150).await;
    sweep_after(&sim, &mut poller, Duration::from_secs(3600)).await;
    let truth = sim.truth(from, sim.now());
    let scrape = Scrape::of(&metrics);
    assert_matches_truth(&scrape, &truth);

    // The run is only a proof if every outcome of every kind happened in it.
    let seen = |kind: &str, outcome: &str| {
        truth
            .group_calls
            .iter()
            .any(|((k, _, o), n)| k == kind && o == outcome && *n > 0)
    };
    for outcome in ["answered", "abandoned", "timeout", "voicemail"] {
        assert!(seen("queue", outcome), "no queue call {outcome}");
        assert!(seen("ringgroup", outcome), "no ring group call {outcome}");
    }
    for outcome in ["routed", "hangup", "timeout"] {
        assert!(
            truth
                .ivr_calls
                .iter()
                .any(|((_, o), n)| o == outcome && *n > 0),
            "no IVR call {outcome}"
        );
    }
    for outcome in ["answered", "missed"] {
        assert!(
            truth
                .group_members
                .iter()
                .any(|((k, _, _, o), n)| k == "queue" && o == outcome && *n > 0),
            "no queue member {outcome}"
        );
    }
    // Every answered queue call sits in some bucket at or below the largest service level,
    // or above it; the buckets are cumulative, as the service-level query assumes.
    let answered = scrape.value(
        "ucm_group_calls_total",
        &[
            ("kind", "queue"),
            ("group", "6500"),
            ("outcome", "answered"),
        ],
    );
    let within = |le: &str| {
        scrape.value(
            "ucm_group_wait_seconds_bucket",
            &[
                ("kind", "queue"),
                ("group", "6500"),
                ("outcome", "answered"),
                ("le", le),
            ],
        )
    };
    assert!(within("10") <= within("20") && within("20") <= within("60"));
    assert!(within("20") > 0.0 && within("60") <= answered);
    promtool_accepts(&String::from_utf8(metrics.text()).unwrap());
}

fn names_target(sim: &SimHandle) -> Target {
    let mut t = target_for(sim, "office");
    t.collectors = BTreeSet::from([Collector::Groups]);
    t
}

fn live(sim: &SimHandle, target: &Target, dir: &std::path::Path) -> (Live, Arc<TargetMetrics>) {
    let (p, metrics) = poller(sim, target.clone(), dir);
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let l = Live::new(target, p.session(), metrics.clone(), ext, sim_clock(sim));
    (l, metrics)
}

fn names(metrics: &TargetMetrics) -> BTreeSet<(String, String, String)> {
    Scrape::of(metrics)
        .by("ucm_group_info", &["kind", "group", "name"])
        .into_keys()
        .map(|k| (k[0].clone(), k[1].clone(), k[2].clone()))
        .collect()
}

#[tokio::test]
async fn names_are_read_hourly_and_a_refused_list_only_leaves_numbers() {
    let sim = start_sim(SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(1415)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = names_target(&sim);
    let (mut live, metrics) = live(&sim, &target, dir.path());
    live.run_once().await;
    let all: BTreeSet<_> = GROUP_NAMES
        .iter()
        .map(|(k, g, n)| (k.to_string(), g.to_string(), n.to_string()))
        .collect();
    assert_eq!(names(&metrics), all);
    // A listed group has its series before its first call, so increase() sees the first one.
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get(
            "ucm_group_calls_total",
            &[
                ("kind", "queue"),
                ("group", "6500"),
                ("outcome", "abandoned")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        scrape.get(
            "ucm_ivr_calls_total",
            &[("ivr", "7000"), ("outcome", "timeout")]
        ),
        Some(0.0)
    );

    // Within the hour nothing is asked again.
    let asked = |sim: &SimHandle| sim.stats().requests.get("listQueue").copied();
    let before = asked(&sim);
    sim.advance(10 * MIN);
    live.run_once().await;
    assert_eq!(asked(&sim), before);

    // Ring groups refused: their names go, the others stay, the collector still works.
    sim.add_fault(FaultRule {
        fault: Fault::Status(-47),
        action: Some("listRingGroup".into()),
        times: None,
    });
    sim.advance(GROUP_NAMES_INTERVAL);
    live.run_once().await;
    let without_ring_groups: BTreeSet<_> = all
        .iter()
        .filter(|(k, _, _)| k != "ringgroup")
        .cloned()
        .collect();
    assert_eq!(names(&metrics), without_ring_groups);
    let up =
        |m: &TargetMetrics| Scrape::of(m).value("ucm_collector_up", &[("collector", "groups")]);
    assert_eq!(up(&metrics), 1.0);

    // All three refused: the collector is down, its names gone, and it rests for an hour.
    for action in ["listQueue", "listIVR"] {
        sim.add_fault(FaultRule {
            fault: Fault::Status(-47),
            action: Some(action.into()),
            times: None,
        });
    }
    sim.advance(GROUP_NAMES_INTERVAL);
    live.run_once().await;
    assert_eq!(up(&metrics), 0.0);
    assert!(names(&metrics).is_empty());
    assert_eq!(
        Scrape::of(&metrics).value(
            "ucm_collector_errors_total",
            &[("collector", "groups"), ("reason", "permission")]
        ),
        1.0
    );
    // The numbers stay: the series of groups seen once are never removed.
    assert!(Scrape::of(&metrics)
        .get(
            "ucm_group_calls_total",
            &[
                ("kind", "ringgroup"),
                ("group", "6400"),
                ("outcome", "answered")
            ]
        )
        .is_some());
}
