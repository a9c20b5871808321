//! TLS reconnects to the simulated UCM resume the session from a ticket: after the first
//! connection of each of its clients, the exporter pays no full handshake again.

mod common;

use std::time::Duration;

use common::*;
use ucm_exporter::cdr::ExtensionPattern;
use ucm_exporter::config::Collector;
use ucm_exporter::live::Live;
use ucm_sim::{Fault, FaultRule, SimConfig};

#[tokio::test]
async fn reconnects_resume_the_tls_session() {
    let sim = start_sim(SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(10)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.collectors = [Collector::System, Collector::Trunks].into_iter().collect();
    let (mut p, metrics) = poller(&sim, target.clone(), dir.path());
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let mut live = Live::new(&target, p.session(), metrics, ext, sim_clock(&sim));
    poll_every(&sim, &mut p, Duration::from_secs(60), 1).await;
    live.run_once().await;
    let first = sim.stats();
    assert!(first.tls_full_handshakes >= 1, "{first:?}");
    // Each dropped answer closes the connection; the next request opens another.
    let drops = 4;
    for _ in 0..drops {
        sim.add_fault(FaultRule {
            fault: Fault::Dropped,
            action: Some("getSystemStatus".into()),
            times: Some(1),
        });
        sim.advance(Duration::from_secs(30));
        live.run_once().await;
    }
    sim.advance(Duration::from_secs(30));
    live.run_once().await;
    let after = sim.stats();
    assert_eq!(
        after.tls_full_handshakes, first.tls_full_handshakes,
        "a reconnect paid a full handshake"
    );
    assert!(
        after.tls_resumed >= first.tls_resumed + drops,
        "{drops} reconnects, {} resumed",
        after.tls_resumed - first.tls_resumed
    );
}
