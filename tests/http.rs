//! The exporter's HTTP side, scraped for real: content type, gzip, `/probe` with two targets,
//! readiness, the landing page, and `promtool check metrics` on the exposition.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use ucm_exporter::cdr::{Disposition, Role};
use ucm_exporter::config::Settings;
use ucm_exporter::exporter::Exporter;
use ucm_exporter::metrics::CallTally;
use ucm_sim::{Fault, FaultRule};

fn settings(targets: Vec<ucm_exporter::config::Target>, dir: &std::path::Path) -> Settings {
    Settings {
        state_dir: dir.to_path_buf(),
        extension_pattern: ucm_exporter::config::DEFAULT_EXTENSION_PATTERN.into(),
        extension_max: 5000,
        targets,
    }
}

async fn wait_ready(base: &str) {
    for _ in 0..200 {
        if get(&format!("{base}/-/ready")).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the exporter never became ready");
}

#[tokio::test]
async fn two_targets_via_probe_keep_separate_counts() {
    let a = start_sim(busy_sim_config(31)).await;
    let b = start_sim(busy_sim_config(32)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ta = target_for(&a, "alpha");
    let mut tb = target_for(&b, "beta");
    ta.sweep_interval = Duration::ZERO;
    tb.sweep_interval = Duration::ZERO;
    ta.poll_interval = Duration::from_millis(300);
    tb.poll_interval = Duration::from_millis(300);
    // One clock for both: the two simulators start at the same moment, and every poll here
    // sweeps, so only the baselines read the clock.
    let running = Exporter::new(settings(vec![ta, tb], dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&a))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    wait_ready(&base).await;
    // Both baselines are taken once ready; count from here.
    let (a0, b0) = (a.now(), b.now());
    a.advance(Duration::from_secs(20 * 60));
    b.advance(Duration::from_secs(5 * 60));
    let (a1, b1) = (a.now(), b.now());
    let (ta_truth, tb_truth) = (a.truth(a0, a1), b.truth(b0, b1));
    assert_ne!(ta_truth.total_calls, tb_truth.total_calls);
    // Wait until both pollers have read everything (two more polls each).
    let mut matched = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sa = Scrape::parse(
            &get(&format!("{base}/probe?target=alpha"))
                .await
                .text()
                .await
                .unwrap(),
        );
        let sb = Scrape::parse(
            &get(&format!("{base}/probe?target=beta"))
                .await
                .text()
                .await
                .unwrap(),
        );
        if sa.sum("ucm_calls_total") as u64 == ta_truth.total_calls
            && sb.sum("ucm_calls_total") as u64 == tb_truth.total_calls
        {
            assert_matches_truth(&sa, &ta_truth);
            assert_matches_truth(&sb, &tb_truth);
            matched = true;
            break;
        }
    }
    assert!(matched, "the probes never showed the simulators' calls");

    // With two targets, /metrics holds only the exporter's own metrics.
    let own = get(&format!("{base}/metrics")).await.text().await.unwrap();
    assert!(own.contains("ucm_exporter_build_info{"));
    assert!(own.contains("process_resident_memory_bytes"));
    assert!(!own.contains("ucm_calls_total"));

    for (query, why) in [
        ("", "missing parameter"),
        ("?target=gamma", "unknown target"),
        ("?target=", "missing parameter"),
    ] {
        let r = get(&format!("{base}/probe{query}")).await;
        assert_eq!(r.status(), 400);
        let body = r.text().await.unwrap();
        assert!(body.contains(why), "{body}");
        assert_eq!(body.lines().count(), 1);
    }
    // A URL is never a target: nothing is fetched from it.
    let r = get(&format!("{base}/probe?target=https://127.0.0.1:1/api")).await;
    assert_eq!(r.status(), 400);
    running.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_format_gzip_landing_and_readiness() {
    let sim = start_sim(busy_sim_config(33)).await;
    // The first poll hangs for a moment, so readiness can be seen going from 503 to 200.
    sim.add_fault(FaultRule {
        fault: Fault::Delay(Duration::from_millis(800)),
        action: Some("challenge".into()),
        times: Some(1),
    });
    let dir = tempfile::tempdir().unwrap();
    let running = Exporter::new(settings(vec![target_for(&sim, "office")], dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&sim))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    let r = get(&format!("{base}/-/ready")).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("office"));
    assert_eq!(get(&format!("{base}/-/healthy")).await.status(), 200);
    wait_ready(&base).await;

    let r = get(&format!("{base}/metrics")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = r.text().await.unwrap();
    let scrape = Scrape::parse(&plain);
    assert_eq!(scrape.value("ucm_up", &[]), 1.0);
    assert_eq!(
        scrape.value(
            "ucm_calls_total",
            &[
                ("direction", "inbound"),
                ("trunk", ""),
                ("disposition", "no_answer")
            ]
        ),
        0.0,
        "missed-call series exist at 0 from the start"
    );
    assert!(!plain.contains(&ucm_sim::SimConfig::default().password));

    let text = get_gzip(&format!("{base}/metrics")).await;
    assert!(text.contains("ucm_up 1"));
    assert!(text.contains("ucm_exporter_build_info{"));

    // Counts applied after the first scrapes show in the next ones, gzip or not, on both paths.
    let mut tally = CallTally::default();
    tally.add_extension_calls("98765", Role::Callee, Disposition::Voicemail, 7);
    tally.add_extension_talk("98765", Role::Caller, 321);
    running.app.targets[0].metrics.apply(&tally);
    let want = [
        "ucm_extension_calls_total{disposition=\"voicemail\",extension=\"98765\",role=\"callee\"} 7\n",
        "ucm_extension_talk_seconds_total{extension=\"98765\",role=\"caller\"} 321\n",
        "ucm_up 1\n",
    ];
    let after = get_gzip(&format!("{base}/metrics")).await;
    let probed = get_gzip(&format!("{base}/probe?target=office")).await;
    let plain_after = get(&format!("{base}/metrics")).await.text().await.unwrap();
    for line in want {
        for (what, body) in [
            ("gzip", &after),
            ("probe", &probed),
            ("plain", &plain_after),
        ] {
            assert!(body.contains(line), "{what} scrape lacks {line}");
        }
    }
    assert!(after.contains("process_resident_memory_bytes"));
    assert!(!probed.contains("ucm_exporter_build_info"));

    let landing = get(&base).await;
    assert!(landing.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = landing.text().await.unwrap();
    assert!(html.contains("href=\"/metrics\"") && html.contains("/probe?target=office"));
    assert_eq!(get(&format!("{base}/nope")).await.status(), 404);
    let post = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);

    promtool_accepts(&plain);
    promtool_accepts(&after);

    let started = std::time::Instant::now();
    running.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let saved = std::fs::read_to_string(dir.path().join("office.json")).unwrap();
    assert!(saved.contains("\"watermark\""));
    sim.shutdown().await;
}

/// A scrape as Prometheus makes it (always asking for gzip), decoded.
async fn get_gzip(url: &str) -> String {
    let r = reqwest::Client::new()
        .get(url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// promtool (Debian package `prometheus`) must accept the exposition without a word.
fn promtool_accepts(plain: &str) {
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
