//! How fast the simulator serves CDRs: ~100k history calls paged through over loopback HTTPS
//! with numRecords=1000, several sweeps. Run with `cargo bench --bench sim_serve`.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use ucm_sim::{self as sim, SimConfig};

const SWEEPS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let began = Instant::now();
    let ucm = sim::start(SimConfig {
        clock_speed: 0.0,
        calls_per_hour: 100_000.0 / 24.0,
        history: Duration::from_secs(24 * 3600),
        ..SimConfig::default()
    })
    .await?;
    println!("generated 24 h of history in {:.2?}", began.elapsed());

    let client = common::SimClient::login(&ucm).await?;

    let (mut entries, mut bytes, mut pages) = (0usize, 0usize, 0usize);
    let began = Instant::now();
    for _ in 0..SWEEPS {
        let mut offset = 0;
        loop {
            let body = String::from_utf8(
                client
                    .post(
                        json!({"action": "cdrapi", "cookie": client.cookie, "format": "json",
                    "numRecords": "1000", "offset": offset.to_string()}),
                    )
                    .await?,
            )?;
            // Every top-level entry, flat or grouped, opens with its `cdr` key; legs never do.
            // Counting that instead of parsing keeps the client's cost out of the figure.
            anyhow::ensure!(
                body.starts_with("{\"cdr_root\":["),
                "not a cdr page: {}",
                &body[..body.len().min(200)]
            );
            let n = body.matches("{\"cdr\":").count();
            anyhow::ensure!(
                n > 0 || offset > 0,
                "no entries served: {}",
                &body[..body.len().min(200)]
            );
            entries += n;
            bytes += body.len();
            pages += 1;
            offset += n;
            if n < 1000 {
                break;
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{SWEEPS} sweeps, {pages} pages, {entries} entries, {:.1} MB in {secs:.2} s: {:.0} entries/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        entries as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    ucm.shutdown().await;
    Ok(())
}
