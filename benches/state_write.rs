//! What keeping the counters in the state file costs: the state write of a target with 20,000
//! call series (and the keys of four busy hours) against the whole commit of a poll that
//! brought a page of 1,000 entries (ingest, increments resolved, state written, counters
//! published), in CPU time of this thread (a write's wait for the disk is no CPU), measured in
//! the same run.
//!
//! `cargo bench --bench state_write`; `scripts/bench.sh` runs it and prints the table row it
//! ends with (a markdown row, starting `| `).

mod common;

use std::time::Duration;

use serde_json::json;
use ucm_exporter::cdr::{Disposition, ExtensionPattern, Role};
use ucm_exporter::metrics::{CallTally, TargetMetrics};
use ucm_exporter::poll::{self, Pending, Plan};
use ucm_exporter::state::{self, PollState};
use ucm_sim::{self as sim, SimConfig};

const SERIES: usize = 20_000;
const RUNS: usize = 40;

/// One page of 1,000 entries of a busy office, served by the simulator over HTTPS.
async fn fetch_page() -> anyhow::Result<Vec<u8>> {
    let ucm = sim::start(SimConfig {
        clock_speed: 0.0,
        start_time: chrono::NaiveDate::from_ymd_opt(2025, 3, 4)
            .and_then(|d| d.and_hms_opt(18, 0, 0)),
        calls_per_hour: 3000.0,
        history: Duration::from_secs(4 * 3600),
        ..SimConfig::default()
    })
    .await?;
    let client = common::SimClient::login(&ucm).await?;
    let page = client
        .post(
            json!({"action": "cdrapi", "cookie": client.cookie, "format": "json",
                     "numRecords": "1000", "offset": "2000"}),
        )
        .await?;
    ucm.shutdown().await;
    Ok(page)
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let page = tokio::runtime::Runtime::new()?.block_on(fetch_page())?;
    let dir = tempfile::tempdir()?;
    let path = state::path_for(dir.path(), "office");
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT)?;

    // 20,000 series: 2,000 extensions by role and disposition, on top of the call series.
    let metrics = TargetMetrics::new(5000);
    let mut tally = CallTally::default();
    for e in 0..SERIES / 10 {
        for role in [Role::Caller, Role::Callee] {
            for d in Disposition::ALL {
                tally.add_extension_calls(&format!("{}", 10_000 + e), role, d, 1 + e as u64 % 7);
            }
        }
    }
    let mut state = PollState::new("https://bench", 0);
    state.series = metrics.resolve(&tally);
    metrics.add(&state.series);
    // The keys of four hours at 3,000 calls/h, two legs a call.
    for k in 0..12_000u64 {
        state
            .calls
            .insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k as i64);
        for l in 0..2 {
            state
                .legs
                .insert((k * 2 + l).wrapping_mul(0xC2B2_AE3D_27D4_EB4F), k as i64);
        }
    }
    let series = state.series.len();
    anyhow::ensure!(series >= SERIES, "only {series} series");

    let (mut writes, mut polls) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = thread_cpu();
        state::save(&path, &state)?;
        writes.push(thread_cpu() - t);

        let t = thread_cpu();
        let mut pending = Pending::default();
        let mut notes = Default::default();
        poll::ingest(
            &page,
            None,
            &mut pending,
            &mut notes,
            &ext,
            ucm_exporter::clock::Zone::UTC,
            &Plan::WHOLE,
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let delta = metrics.resolve(pending.tally());
        state.series.add(&delta).map_err(anyhow::Error::msg)?;
        state::save(&path, &state)?;
        metrics.add(&delta);
        polls.push(thread_cpu() - t);
    }
    let (write, poll) = (median(writes), median(polls));
    let share = write.as_secs_f64() / poll.as_secs_f64() * 100.0;
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "| State | state write with {series} call series and 36,000 keys ({:.1} MB), CPU; against a poll's commit of a 1,000-entry page (ingest, increments, state write, publication) | {:.1} ms of {:.1} ms = {share:.1} % | < 5 % | {} |",
        bytes as f64 / 1e6,
        write.as_secs_f64() * 1e3,
        poll.as_secs_f64() * 1e3,
        if share < 5.0 { "yes" } else { "**no**" },
    );
    Ok(())
}
