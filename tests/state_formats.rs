//! The state file across versions and URLs: every format this exporter has written loads and
//! counting goes on from it without a new baseline; a later version's file is refused and left
//! as it is; a new URL keeps the state only when the UCM there says it is the same one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use ucm_exporter::poll::PollKind;
use ucm_exporter::state::{self, Loaded, VERSION};
use ucm_sim::{Fault, FaultRule};

const MIN: Duration = Duration::from_secs(60);

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Each fixture loads as written by hand: keys, watermark, and what its paging record says in
/// today's terms (`short_page_ends` was a page the UCM served: `largest_page`).
#[test]
fn every_earlier_format_loads_as_written() {
    let all = fixtures();
    assert_eq!(all.len(), 9, "{all:?}");
    for path in all {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let s = match state::load(&path) {
            Loaded::Found(s) => s,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(s.version, VERSION, "{name}");
        assert_eq!(s.url, "https://192.0.2.10:8089", "{name}");
        assert_eq!(
            (s.baseline_start, s.watermark),
            (1_772_604_000, Some(1_772_618_310)),
            "{name}"
        );
        assert_eq!((s.calls.len(), s.legs.len()), (2, 3), "{name}");
        assert_eq!(
            s.calls.get(&8_017_072_134_411_529_121),
            Some(&1_772_618_310)
        );
        if name.starts_with("v1-") {
            assert!(s.series.is_empty() && s.series_since.is_none() && s.ucm.is_none());
        } else {
            assert_eq!(
                (s.series.len(), s.series.last_record),
                (5, Some(1_772_618_310))
            );
            assert_eq!(s.series_since, Some(1_772_604_000));
            assert_eq!(s.ucm.unwrap().serial.as_deref(), Some("SIM0000000042"));
        }
        let want_largest = match name.as_str() {
            n if n.contains("short-page-ends") => 37,
            n if n.contains("filter-reads-utc") => 500,
            n if n.contains("largest-page")
                || n.contains("offset")
                || n.contains("windows")
                || n.starts_with("v2-") =>
            {
                1000
            }
            _ => 0,
        };
        assert_eq!(s.paging.largest_page, want_largest, "{name}");
        assert_eq!(
            s.paging.cap,
            name.contains("filter-reads-utc").then_some(500),
            "{name}"
        );
        assert_eq!(s.paging.filter_reads_utc, name.contains("filter-reads-utc"));
        assert_eq!(s.paging.offset_ignored, name.contains("offset-ignored"));
        assert_eq!(
            s.windows.as_ref().map(|w| w.mode.as_str()),
            (name.contains("windows") || name.starts_with("v2-")).then_some("end"),
            "{name}"
        );
        assert_eq!(
            s.trunks.is_empty(),
            name.contains("before-trunks"),
            "{name}"
        );
    }
}

/// A real state written into the form of `fixture`: only the fields the fixture has, its
/// version, its paging record as the fixture spells it, and the keys as an object of
/// `"key": start` as versions 1 and 2 wrote them.
fn in_form_of(real: &Value, fixture: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("real.json");
    std::fs::write(&path, real.to_string()).unwrap();
    let Loaded::Found(keys) = state::load(&path) else {
        panic!("the real state loads");
    };
    let mut out = serde_json::Map::new();
    for (k, v) in fixture.as_object().unwrap() {
        let value = match (k.as_str(), v) {
            ("version", v) => v.clone(),
            ("calls", _) => serde_json::to_value(&keys.calls).unwrap(),
            ("legs", _) => serde_json::to_value(&keys.legs).unwrap(),
            ("paging", Value::Null) => Value::Null,
            ("paging", Value::Object(form)) => {
                let have = &real["paging"];
                let mut p = serde_json::Map::new();
                for key in form.keys() {
                    let from = if key == "short_page_ends" {
                        "largest_page"
                    } else {
                        key
                    };
                    p.insert(key.clone(), have[from].clone());
                }
                Value::Object(p)
            }
            (k, _) => real[k].clone(),
        };
        out.insert(k.clone(), value);
    }
    Value::Object(out)
}

/// A state of every earlier format, holding what the running exporter had committed, is taken
/// up without a new baseline: the next poll counts exactly the calls since, against the
/// simulator's truth. (Before version 2, a `paging` without `largest_page`, or null, was
/// declared corrupt and a new baseline taken.)
#[tokio::test]
async fn every_earlier_format_goes_on_counting_without_a_new_baseline() {
    let sim = start_sim(busy_sim_config(31)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let (mut first, _) = poller(&sim, target.clone(), dir.path());
    let t0 = sim.now();
    first.poll_and_record().await.unwrap();
    sweep_after(&sim, &mut first, target.sweep_interval).await;
    let t1 = sim.now();
    first.close().await;
    let real = json(&dir.path().join("office.json"));
    assert_eq!(real["version"], VERSION);
    assert!(real["calls"].is_string(), "keys packed");
    sim.advance(MIN * 30);
    for fixture in fixtures() {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let d = tempfile::tempdir().unwrap();
        let old = in_form_of(&real, &json(&fixture));
        std::fs::write(d.path().join("office.json"), old.to_string()).unwrap();
        let (mut p, m) = poller(&sim, target.clone(), d.path());
        let r = p.poll_and_record().await.unwrap();
        assert_ne!(r.kind, PollKind::Baseline, "{name}: {r:?}");
        assert!(!d.path().join("office.json.bad").exists(), "{name}");
        // Version 1 kept no counters: they start from zero at the upgrade, and count on.
        // Version 2 kept them: they continue.
        let since = if name.starts_with("v1-") { t1 } else { t0 };
        assert_matches_truth(&Scrape::of(&m), &sim.truth(since, sim.now()));
        p.close().await;
        assert_eq!(
            json(&d.path().join("office.json"))["version"],
            VERSION,
            "{name}"
        );
    }
    sim.shutdown().await;
}

/// A file of a later version is refused with an error naming the file and both versions, is
/// left exactly as it is, and its target is not polled (`ucm_up 0`, reason `state`), while
/// another target of the same exporter polls as usual.
#[tokio::test]
async fn a_later_version_is_refused_left_in_place_and_stops_only_its_target() {
    let sim = start_sim(busy_sim_config(32)).await;
    let dir = tempfile::tempdir().unwrap();
    let later = br#"{"version":4,"url":"whatever","holds":"what this version cannot know"}"#;
    let path = dir.path().join("office.json");
    std::fs::write(&path, later).unwrap();
    let (mut refused, m) = poller(&sim, target_for(&sim, "office"), dir.path());
    let (mut other, _) = poller(&sim, target_for(&sim, "branch"), dir.path());
    for _ in 0..2 {
        let err = refused.poll_and_record().await.unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.reason().as_str(), "state");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("version 4") && msg.contains("1 to 3"), "{msg}");
        sim.advance(MIN);
    }
    let s = Scrape::of(&m);
    assert_eq!(s.value("ucm_up", &[]), 0.0);
    assert_eq!(
        s.value("ucm_poll_errors_total", &[("reason", "state")]),
        2.0
    );
    assert_eq!(sim.stats().logins_ok, 0, "the refused target sent nothing");
    other
        .poll_and_record()
        .await
        .expect("the other target polls");
    refused.close().await;
    assert_eq!(std::fs::read(&path).unwrap(), later, "left as it was");
    assert!(!dir.path().join("office.json.bad").exists());
    sim.shutdown().await;
}

/// The same UCM under a new URL (its IP address replaced by a host name): the state is kept,
/// no new baseline, and every counter continues.
#[tokio::test]
async fn a_new_url_of_the_same_ucm_keeps_counting() {
    let sim = start_sim(busy_sim_config(33)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let (mut first, _) = poller(&sim, target.clone(), dir.path());
    first.poll_and_record().await.unwrap();
    let t0 = sim.now();
    sweep_after(&sim, &mut first, target.sweep_interval).await;
    first.close().await;
    let saved = json(&dir.path().join("office.json"));
    assert!(
        saved["ucm"]["serial"].as_str().is_some(),
        "{}",
        saved["ucm"]
    );

    let mut renamed = target.clone();
    renamed.url = target.url.replace("127.0.0.1", "localhost");
    assert_ne!(renamed.url, target.url);
    sim.advance(MIN * 20);
    let (mut second, m) = poller(&sim, renamed.clone(), dir.path());
    let r = second.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Sweep, "{r:?}");
    assert!(!dir.path().join("office.json.bad").exists());
    assert_matches_truth(&Scrape::of(&m), &sim.truth(t0, sim.now()));
    second.close().await;
    assert_eq!(
        json(&dir.path().join("office.json"))["url"],
        renamed.url.as_str()
    );
    sim.shutdown().await;
}

/// Another UCM under the new URL (a simulator of another seed), or one that may not say who it
/// is: the keys are not used, the file is moved aside and a new baseline taken; the counters
/// continue, so Prometheus sees no reset.
#[tokio::test]
async fn a_new_url_of_another_or_a_silent_ucm_takes_a_new_baseline() {
    let a = start_sim(busy_sim_config(34)).await;
    let b = start_sim(busy_sim_config(35)).await;
    for silent in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let target = target_for(&a, "office");
        let (mut first, m1) = poller(&a, target.clone(), dir.path());
        first.poll_and_record().await.unwrap();
        sweep_after(&a, &mut first, target.sweep_interval).await;
        let counted = Scrape::of(&m1).sum("ucm_calls_total");
        assert!(counted > 0.0);
        first.close().await;

        let (sim, url) = if silent {
            // The same simulator, which now refuses getSystemStatus, under its host name.
            a.add_fault(FaultRule {
                fault: Fault::Status(-47),
                action: Some("getSystemStatus".into()),
                times: None,
            });
            (&a, target.url.replace("127.0.0.1", "localhost"))
        } else {
            (&b, b.url())
        };
        let mut moved = target_for(sim, "office");
        moved.url = url;
        let (mut second, m2) = poller(sim, moved, dir.path());
        assert_eq!(Scrape::of(&m2).sum("ucm_calls_total"), counted);
        let r = second.poll_and_record().await.unwrap();
        assert_eq!(r.kind, PollKind::Baseline, "silent {silent}: {r:?}");
        assert!(dir.path().join("office.json.bad").exists());
        let tb = sim.now();
        sweep_after(sim, &mut second, target.sweep_interval).await;
        let now = Scrape::of(&m2).sum("ucm_calls_total");
        let truth: u64 = sim.truth(tb, sim.now()).calls.values().sum();
        assert_eq!(now, counted + truth as f64, "silent {silent}");
        second.close().await;
    }
    a.shutdown().await;
    b.shutdown().await;
}
