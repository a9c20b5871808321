//! A fleet behind Prometheus through `/sd`: two exporters, each with its own UCMs and state, and
//! the documented Prometheus configs (`deploy/fleet/`) run by real Prometheus servers, which must
//! discover every target, scrape it through `/probe` and label it with its name, and, sharded,
//! scrape each target on exactly one server.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use ucm_exporter::config::Settings;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/fleet")
            .join(name),
    )
    .unwrap()
}

/// `text` with `from` replaced by `to`, which must occur in it: the example under test is the
/// documented one, changed only where a test must.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the example");
    text.replace(from, to)
}

/// The example config aimed at the two exporters, scraping and refreshing every second.
fn aimed(text: &str, exporters: &[String; 2]) -> String {
    let text = replaced(text, "exporter-1:9736", &exporters[0]);
    let text = replaced(&text, "exporter-2:9736", &exporters[1]);
    let text = replaced(&text, "scrape_interval: 60s", "scrape_interval: 1s");
    text.replace("refresh_interval: 1m", "refresh_interval: 1s")
}

/// The `instance` of each `ucm_up` series a Prometheus holds that is 1, once `want` many are.
async fn instances_up(prom: &Daemon, want: usize) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = prom.query("ucm_up == 1", None).await.unwrap();
        let names: BTreeSet<String> = up
            .iter()
            .map(|s| s["metric"]["instance"].as_str().unwrap().to_string())
            .collect();
        if names.len() >= want {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "only {names:?} up:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn prometheus_discovers_every_target_through_sd_and_scrapes_it_via_probe() {
    let (a, b, c) = (
        start_sim(busy_sim_config(51)).await,
        start_sim(busy_sim_config(52)).await,
        start_sim(busy_sim_config(53)).await,
    );
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, base1) = start_exporter(
        Settings::new(
            dir1.path(),
            vec![target_for(&a, "alpha"), target_for(&b, "bravo")],
        ),
        &a,
    )
    .await;
    let (two, base2) = start_exporter(
        Settings::new(dir2.path(), vec![target_for(&c, "charlie")]),
        &c,
    )
    .await;
    let exporters = [one.addr().to_string(), two.addr().to_string()];

    // What the exporter serves: one group per target, addressed as it was reached.
    let sd: Value =
        serde_json::from_str(&get(&format!("{base1}/sd")).await.text().await.unwrap()).unwrap();
    assert_eq!(sd.as_array().unwrap().len(), 2);
    assert_eq!(sd[1]["targets"][0], exporters[0].as_str());
    assert_eq!(sd[1]["labels"]["__param_target"], "bravo");
    let page = get(&format!("{base2}/")).await.text().await.unwrap();
    assert!(page.contains("href=\"/sd\""));

    let all: BTreeSet<String> = ["alpha", "bravo", "charlie"].map(String::from).into();
    let mut prom = start_prometheus(&aimed(&example("prometheus.yml"), &exporters));
    // The sharded pair, started now so that they start up alongside.
    let shard = example("prometheus-shard.yml");
    let mut p0 = start_prometheus(&aimed(&shard, &exporters));
    let mut p1 = start_prometheus(&aimed(
        &replaced(&shard, "regex: \"0\"", "regex: \"1\""),
        &exporters,
    ));
    prom.wait_ready().await;
    assert_eq!(instances_up(&prom, 3).await, all);
    for name in &all {
        let up = prom
            .scalar(&format!("up{{job=\"ucm\",instance=\"{name}\"}}"), None)
            .await;
        assert_eq!(up, Some(1.0), "{name}");
    }
    // Scraped through /probe of the exporter that holds it.
    let text = reqwest::get(format!("{}/api/v1/targets?state=active", prom.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let targets: Value = serde_json::from_str(&text).unwrap();
    let urls: BTreeSet<String> = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["scrapeUrl"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = [(0, "alpha"), (0, "bravo"), (1, "charlie")]
        .iter()
        .map(|(i, n)| format!("http://{}/probe?target={n}", exporters[*i]))
        .collect();
    assert_eq!(urls, want);
    drop(prom);

    // Sharded over two servers: each target on exactly one.
    p0.wait_ready().await;
    p1.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s0, s1) = (instances_up(&p0, 0).await, instances_up(&p1, 0).await);
        assert!(s0.is_disjoint(&s1), "{s0:?} and {s1:?} overlap");
        if s0.union(&s1).cloned().collect::<BTreeSet<_>>() == all {
            break;
        }
        assert!(Instant::now() < deadline, "shards hold {s0:?} and {s1:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((p0, p1));
    one.shutdown().await;
    two.shutdown().await;
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

/// How long a test waits for what a poll of a second or less shows.
const PATIENCE: Duration = Duration::from_secs(30);

/// A UCM that accepts connections and never answers delays no other target: the other target
/// polls on and counts every call, and both targets' scrapes answer, while the dead one's
/// requests wait out a timeout far longer than the test.
#[tokio::test]
async fn a_ucm_that_never_answers_delays_no_other_target() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let b = start_sim(busy_sim_config(55)).await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut stuck = target_for(&b, "stuck");
    stuck.url = format!("https://{}", dead.local_addr().unwrap());
    stuck.request_timeout = Duration::from_secs(3600);
    let accepted = Arc::new(AtomicUsize::new(0));
    let holding = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (conn, _) = dead.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        })
    };
    let mut bravo = target_for(&b, "bravo");
    bravo.sweep_interval = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    // Not `start_exporter`, which waits until every target has finished its first poll.
    let running =
        ucm_exporter::exporter::Exporter::new(Settings::new(dir.path(), vec![stuck, bravo]))
            .listen("127.0.0.1:0")
            .clock(sim_clock(&b))
            .start()
            .await
            .unwrap();
    let base = format!("http://{}", running.addr());
    let probe = |n: &str| format!("{base}/probe?target={n}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = get(&probe("bravo")).await.text().await.unwrap();
        if Scrape::parse(&text).value("ucm_up", &[]) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "bravo never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = b.now();
    b.advance(Duration::from_secs(4 * 60));
    wait_for_calls(&probe("bravo"), b.truth(t0, b.now()).total_calls, PATIENCE).await;
    let stuck = Scrape::parse(&get(&probe("stuck")).await.text().await.unwrap());
    assert_eq!(stuck.value("ucm_up", &[]), 0.0);
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the dead UCM was asked"
    );
    holding.abort();
    running.shutdown().await;
    b.shutdown().await;
}
