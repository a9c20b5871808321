//! A UCM that misbehaves: each failure shows as `ucm_up 0` with the right reason, and the next
//! good poll recovers everything with nothing lost or counted twice.

mod common;

use std::time::Duration;

use common::*;
use ucm_sim::{Fault, FaultRule, SimConfig};

const MIN: Duration = Duration::from_secs(60);

fn cdrapi(fault: Fault) -> FaultRule {
    FaultRule {
        fault,
        action: Some("cdrapi".into()),
        times: None,
    }
}

#[tokio::test]
async fn each_fault_gives_up_0_with_its_reason_and_full_recovery() {
    let sim = start_sim(busy_sim_config(21)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.request_timeout = Duration::from_millis(700);
    target.sweep_interval = Duration::ZERO;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();

    let cases = [
        (Fault::Http500, "http"),
        (Fault::Garbage, "decode"),
        (Fault::Truncated, "decode"),
        (Fault::Dropped, "dropped"),
        (Fault::Html403, "forbidden"),
        (Fault::Delay(Duration::from_millis(1500)), "timeout"),
        (Fault::Status(-9), "protocol"),
        (Fault::Status(-47), "permission"),
    ];
    for (fault, reason) in cases {
        sim.advance(MIN * 7);
        sim.add_fault(cdrapi(fault.clone()));
        let err = poller
            .poll_and_record()
            .await
            .expect_err("the faulty poll fails");
        assert_eq!(err.reason().as_str(), reason, "{fault:?}: {err}");
        let scrape = Scrape::of(&metrics);
        assert_eq!(scrape.value("ucm_up", &[]), 0.0, "{fault:?}");
        assert!(scrape.value("ucm_poll_errors_total", &[("reason", reason)]) >= 1.0);
        sim.clear_faults();
        poller
            .poll_and_record()
            .await
            .expect("recovers once the UCM behaves");
        let scrape = Scrape::of(&metrics);
        assert_eq!(scrape.value("ucm_up", &[]), 1.0);
        assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    }
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "decode")]),
        2.0
    );
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "http")]),
        1.0
    );
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "timeout")]),
        1.0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_ucm_is_a_connect_error() {
    let sim = start_sim(busy_sim_config(22)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    sim.shutdown().await;
    let err = poller.poll_and_record().await.unwrap_err();
    assert_eq!(err.reason().as_str(), "connect", "{err}");
    assert_eq!(Scrape::of(&metrics).value("ucm_up", &[]), 0.0);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let sim = start_sim(busy_sim_config(23)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.ca_file = None; // the simulator's self-signed certificate is not trusted
    let (mut poller, _) = poller(&sim, target.clone(), dir.path());
    let err = poller.poll_and_record().await.unwrap_err();
    assert_eq!(err.reason().as_str(), "tls", "{err}");
    // The documented last resort works.
    target.insecure_skip_verify = true;
    let (mut poller, _) = common::poller(&sim, target, dir.path());
    poller
        .poll_and_record()
        .await
        .expect("insecure_skip_verify accepts the certificate");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_backs_off_and_never_hammers_the_login() {
    let sim = start_sim(SimConfig {
        password: "another".into(),
        ..busy_sim_config(24)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    for _ in 0..5 {
        let err = poller.poll_and_record().await.unwrap_err();
        assert_eq!(err.reason().as_str(), "auth", "{err}");
    }
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.value("ucm_up", &[]), 0.0);
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "auth")]),
        5.0
    );
    // One attempt, then at least a minute of waiting: far from the UCM's lockout of 5.
    assert_eq!(scrape.value("ucm_logins_total", &[]), 1.0);
    assert_eq!(scrape.value("ucm_login_failures_total", &[]), 1.0);
    assert_eq!(sim.stats().logins_failed, 1);
    assert_eq!(sim.stats().requests.get("cdrapi"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_statuses_pause_all_requests() {
    let sim = start_sim(busy_sim_config(25)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    poller.poll_and_record().await.unwrap();
    sim.add_fault(FaultRule {
        fault: Fault::Status(-46),
        action: Some("cdrapi".into()),
        times: Some(1),
    });
    sim.advance(MIN);
    let err = poller.poll_and_record().await.unwrap_err();
    assert_eq!(err.reason().as_str(), "rate_limited");
    let sent = sim.stats().requests["cdrapi"];
    // Within the 15 s the UCM asked for, polls fail without sending anything.
    for _ in 0..3 {
        assert_eq!(poll_error(&mut poller).await, "rate_limited");
    }
    assert_eq!(sim.stats().requests["cdrapi"], sent);
    // Once the 15 s have passed on the UCM's clock, the next poll goes through.
    sim.advance(Duration::from_secs(15));
    poller.poll_and_record().await.expect("the wait is over");
    assert_eq!(
        Scrape::of(&metrics).value("ucm_poll_errors_total", &[("reason", "rate_limited")]),
        4.0
    );
    sim.shutdown().await;
}
