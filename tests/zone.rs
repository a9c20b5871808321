//! The UCM's own clock zone: with `timezone` unset the exporter reads the UCM's UTC offset from
//! `getSystemStatus` and follows it, so a UCM hours east of the exporter's host costs no more
//! to poll than one whose zone is configured right, and a DST step of the UCM's clock, picked up
//! at the next status cycle, loses and doubles nothing.

mod common;

use std::time::Duration;

use chrono::NaiveDateTime;
use common::*;
use ucm_exporter::config::WindowPreference;
use ucm_sim::SimConfig;

const MIN: Duration = Duration::from_secs(60);

/// What one run fetched and counted.
#[derive(Debug)]
struct Run {
    entries: usize,
    new_calls: u64,
    late: f64,
    scrape: Scrape,
}

impl Run {
    fn per_call(&self) -> f64 {
        self.entries as f64 / self.new_calls as f64
    }
}

/// A UCM in `ucm_zone` on flat traffic from `start` (its local time); the exporter on a host
/// whose zone is UTC, with `timezone` set to `configured` (None: follow the UCM), polling
/// every minute for `minutes` in `mode`, its status cycle every 5 minutes. `step`: at this UCM
/// time, its clock steps by the minutes given (a DST change). Counts are checked against the
/// simulator's truth after the next sweep.
async fn run(
    seed: u64,
    ucm_zone: chrono_tz::Tz,
    configured: Option<chrono_tz::Tz>,
    start: &str,
    minutes: u32,
    mode: WindowPreference,
    step: Option<(&str, i64)>,
) -> Run {
    let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    let sim = start_sim(SimConfig {
        timezone: ucm_zone,
        start_time: Some(at(start)),
        flat_traffic: true,
        calls_per_hour: 600.0,
        ..busy_sim_config(seed)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.timezone = configured;
    target.fallback_zone = chrono_tz::UTC;
    target.window_mode = mode;
    target.poll_interval = MIN;
    target.sweep_interval = MIN * 10;
    target.safety_sweep_interval = MIN * 60;
    target.collectors.clear();
    let (mut poller, metrics) = poller(&sim, target.clone(), dir.path());
    let mut live = live_for(&sim, &target, &poller, metrics.clone());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    let mut truth = None;
    let (mut entries, mut new_calls) = (0, 0);
    for i in 1..=minutes {
        sim.advance(MIN);
        // The clock steps as it reaches `when`, before anything reads it there.
        if let Some((when, by)) = step {
            if truth.is_none() && sim.now() == at(when) {
                // A step back lowers the readings of what became visible before it, so the
                // truth is taken in two spans.
                let before = sim.truth(t0, sim.now());
                sim.step_clock(chrono::Duration::minutes(by));
                truth = Some((before, sim.now()));
            }
        }
        if i % 5 == 0 {
            live.run_once().await;
        }
        let r = poller.poll_and_record().await.expect("poll");
        entries += r.entries;
        new_calls += r.new_calls;
    }
    // On to the next sweep, after which every call that ended is counted.
    for _ in 0..=60 {
        sim.advance(MIN);
        let r = poller.poll_and_record().await.expect("poll");
        if r.kind != ucm_exporter::poll::PollKind::Incremental {
            break;
        }
    }
    let scrape = Scrape::of(&metrics);
    let truth = match truth {
        Some((mut before, t1)) => {
            before.merge(&sim.truth(t1, sim.now()));
            before
        }
        None => sim.truth(t0, sim.now()),
    };
    assert_matches_truth(&scrape, &truth);
    sim.shutdown().await;
    Run {
        entries,
        new_calls,
        late: scrape.get("ucm_cdr_late_records_total", &[]).unwrap_or(0.0),
        scrape,
    }
}

fn within_10_percent(followed: &Run, right: &Run, what: &str) {
    let (f, r) = (followed.per_call(), right.per_call());
    assert!(
        (f - r).abs() <= 0.1 * r,
        "{what}: {f:.2} entries per new call followed, {r:.2} with the right zone configured"
    );
}

/// A UCM 5 h east of a host in UTC. Followed, it is read as cheaply as with its zone
/// configured, with exact counts; configured wrong (the host's zone), every poll reads the
/// 5 hours again, which is what following avoids.
#[tokio::test]
async fn an_unset_zone_follows_a_ucm_five_hours_east() {
    let karachi = chrono_tz::Asia::Karachi;
    let start = "2026-03-04 10:00:00";
    let mode = WindowPreference::Start;
    let right = run(90, karachi, Some(karachi), start, 30, mode, None).await;
    let followed = run(90, karachi, None, start, 30, mode, None).await;
    let wrong = run(90, karachi, Some(chrono_tz::UTC), start, 30, mode, None).await;
    eprintln!(
        "entries per new call, start windows: zone right {:.2}, followed {:.2}, the host's (5 h behind) {:.2}",
        right.per_call(),
        followed.per_call(),
        wrong.per_call()
    );
    within_10_percent(&followed, &right, "5 h east");
    assert!(
        wrong.per_call() > 5.0 * right.per_call(),
        "a zone 5 h behind the UCM's reads hours again: {:.2} against {:.2}",
        wrong.per_call(),
        right.per_call()
    );
    let offset = |r: &Run, source: &str| {
        r.scrape
            .get("ucm_utc_offset_seconds", &[("source", source)])
    };
    assert_eq!(offset(&followed, "ucm"), Some(18000.0));
    assert_eq!(offset(&followed, "exporter"), Some(18000.0));
    assert_eq!(offset(&wrong, "exporter"), Some(0.0));
    assert_eq!(
        followed.scrape.get("ucm_clock_skew_seconds", &[]),
        Some(0.0)
    );
}

/// DST steps of a UCM in Europe/Berlin, its clock stepped at the change, on a host in UTC:
/// spring forward (02:00 → 03:00) and fall back (03:00 → 02:00), in start windows and in the
/// windows the exporter picks itself. Followed from the status cycle after the step, polls read
/// as much per new call as with the zone configured, counts are exact, and no call is late.
#[tokio::test]
async fn dst_steps_are_followed_without_loss_or_double_counts() {
    let berlin = chrono_tz::Europe::Berlin;
    let steps = [
        ("2027-03-28 01:00:00", ("2027-03-28 02:00:00", 60)),
        ("2027-10-31 02:00:00", ("2027-10-31 03:00:00", -60)),
    ];
    for (seed, (start, step)) in (91..).zip(steps) {
        for mode in [WindowPreference::Start, WindowPreference::Auto] {
            let right = run(seed, berlin, Some(berlin), start, 120, mode, Some(step)).await;
            let followed = run(seed, berlin, None, start, 120, mode, Some(step)).await;
            let what = format!("{mode:?}, step {} min at {}", step.1, step.0);
            within_10_percent(&followed, &right, &what);
            eprintln!(
                "{what}: late {} / {}, per call {:.2} / {:.2}",
                right.late,
                followed.late,
                right.per_call(),
                followed.per_call()
            );
            assert_eq!(followed.late, right.late, "{what}");
        }
    }
}

/// An API user that may not call `getSystemStatus`: the follower settles on the host's zone,
/// says so once (the landing page's line too), and polls on.
#[tokio::test]
async fn a_refused_status_falls_back_to_the_host_zone() {
    let sim = start_sim(SimConfig {
        timezone: chrono_tz::Asia::Karachi,
        ..busy_sim_config(95)
    })
    .await;
    sim.add_fault(ucm_sim::FaultRule {
        fault: ucm_sim::Fault::Status(-47),
        action: Some("getSystemStatus".into()),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.timezone = None;
    target.fallback_zone = chrono_tz::UTC;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.expect("baseline");
    poll_every(&sim, &mut poller, MIN, 2).await;
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("ucm_utc_offset_seconds", &[("source", "exporter")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.get("ucm_utc_offset_seconds", &[("source", "ucm")]),
        None
    );
    let line = poller.status().clock();
    assert!(
        line.starts_with("CDR times read in UTC (this host's") && line.contains("-47"),
        "{line}"
    );
    assert_eq!(sim.stats().requests.get("getSystemStatus"), Some(&1));
    sim.shutdown().await;
}
