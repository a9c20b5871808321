//! Ingest cost: one cdrapi page of 1,000 entries through the exporter's real per-page path
//! (`poll::ingest`: parse, classify, de-duplicate, aggregate), against the floor of
//! `serde_json` merely skipping the same bytes (`IgnoredAny`), measured in the same run so the
//! ratio holds on a noisy machine.
//!
//! The pages are real: served once by the simulator over loopback HTTPS at start, in its
//! realistic mix (mixed firmware, flat and grouped entries), and also regrouped into pages of
//! only flat and only grouped entries. They are written to `$BENCH_OUT` (default: a temporary
//! directory) so the Python comparison ingests the same bytes.
//!
//! `cargo bench --bench ingest`; `scripts/bench.sh` runs it and prints the table rows it ends
//! with (markdown rows, lines starting `| `).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use ucm_exporter::cdr::{self, ExtensionPattern};
use ucm_exporter::poll::{self, Pending, Plan};
use ucm_exporter::state::PollState;
use ucm_exporter::ucm::cdrapi::decode_page;
use ucm_sim::{self as sim, SimConfig};

const PAGE: usize = 1000;

/// Fetches every page of the simulator's history over HTTPS, as the exporter would.
async fn fetch_pages() -> anyhow::Result<Vec<Vec<u8>>> {
    let ucm = sim::start(SimConfig {
        clock_speed: 0.0,
        // A working day of a busy office, so every page is office-hours traffic.
        start_time: chrono::NaiveDate::from_ymd_opt(2025, 3, 4)
            .and_then(|d| d.and_hms_opt(18, 0, 0)),
        calls_per_hour: 3000.0,
        history: Duration::from_secs(10 * 3600),
        ..SimConfig::default()
    })
    .await?;
    let client = common::SimClient::login(&ucm).await?;
    let mut pages = Vec::new();
    let mut offset = 0;
    loop {
        let body = client
            .post(
                json!({"action": "cdrapi", "cookie": client.cookie, "format": "json",
                   "numRecords": PAGE.to_string(), "offset": offset.to_string()}),
            )
            .await?;
        let n = split_entries(&body).len();
        offset += n;
        pages.push(body);
        if n < PAGE {
            break;
        }
    }
    ucm.shutdown().await;
    Ok(pages)
}

/// The raw text of each element of `cdr_root`, found by bracket depth outside strings, so that
/// entries can be regrouped byte for byte.
fn split_entries(body: &[u8]) -> Vec<&[u8]> {
    let start = body
        .iter()
        .position(|&c| c == b'[')
        .map_or(body.len(), |i| i + 1);
    let (mut depth, mut in_str, mut esc, mut from) = (0usize, false, false, 0usize);
    let mut out = Vec::new();
    for (i, &c) in body.iter().enumerate().skip(start) {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                if depth == 0 {
                    from = i;
                }
                depth += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(&body[from..=i]);
                }
            }
            b']' => break,
            _ => {}
        }
    }
    out
}

fn page_of(entries: &[&[u8]]) -> Vec<u8> {
    let mut page = b"{\"cdr_root\":[".to_vec();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            page.push(b',');
        }
        page.extend_from_slice(e);
    }
    page.extend_from_slice(b"]}");
    page
}

fn is_grouped(entry: &[u8]) -> bool {
    entry.windows(10).any(|w| w == b"\"main_cdr\"")
}

struct Case {
    name: &'static str,
    page: Vec<u8>,
}

fn ingest_once(page: &[u8], state: Option<&PollState>, ext: &ExtensionPattern) -> usize {
    let mut pending = Pending::default();
    let mut read = Default::default();
    let page = poll::ingest(
        page,
        state,
        &mut pending,
        &mut read,
        ext,
        ucm_exporter::clock::Zone::UTC,
        &Plan::WHOLE,
    )
    .expect("a page of records");
    page.entries + page.fresh + pending.tally().call_count() as usize
}

/// A state that has seen every call and leg of `page`: an overlap re-read.
fn state_knowing(page: &[u8], ext: &ExtensionPattern) -> PollState {
    let mut state = PollState::new("https://bench", i64::MIN);
    let Ok(entries) = decode_page(page) else {
        return state;
    };
    for e in &entries {
        if let Some(call) = cdr::classify(e, ext) {
            state.calls.insert(call.key, 0);
            for k in call.leg_keys {
                state.legs.insert(k, 0);
            }
        }
    }
    state
}

fn median_ns(dir: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn holds(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let out = std::env::var_os("BENCH_OUT")
        .map_or_else(|| std::env::temp_dir().join("ucm-bench"), PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let pages = tokio::runtime::Runtime::new()?.block_on(fetch_pages())?;
    let all: Vec<&[u8]> = pages.iter().flat_map(|p| split_entries(p)).collect();
    let full: Vec<&Vec<u8>> = pages
        .iter()
        .filter(|p| split_entries(p).len() == PAGE)
        .collect();
    anyhow::ensure!(!full.is_empty(), "the simulator served no full page");
    let grouped: Vec<&[u8]> = all.iter().copied().filter(|e| is_grouped(e)).collect();
    let flat: Vec<&[u8]> = all.iter().copied().filter(|e| !is_grouped(e)).collect();
    anyhow::ensure!(
        grouped.len() >= PAGE && flat.len() >= PAGE,
        "too few entries to regroup: {} grouped, {} flat",
        grouped.len(),
        flat.len()
    );
    // The middle page: the simulator's busy office hours, not the quiet night before them.
    let mixed = full[full.len() / 2].clone();
    let mixed_grouped = split_entries(&mixed)
        .iter()
        .filter(|e| is_grouped(e))
        .count();
    let cases = [
        Case {
            name: "mixed",
            page: mixed,
        },
        Case {
            name: "flat",
            page: page_of(&flat[..PAGE]),
        },
        Case {
            name: "grouped",
            page: page_of(&grouped[..PAGE]),
        },
    ];
    for c in &cases {
        std::fs::write(out.join(format!("page-{}.json", c.name)), &c.page)?;
    }

    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT)?;
    let crit_dir = out.join("criterion");
    let mut crit = Criterion::default()
        .output_directory(&crit_dir)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    for c in &cases {
        let mut g = crit.benchmark_group(c.name);
        g.throughput(Throughput::Elements(PAGE as u64));
        g.bench_function("floor", |b| {
            b.iter(|| serde_json::from_slice::<IgnoredAny>(&c.page).expect("valid JSON"))
        });
        g.bench_function("ingest", |b| b.iter(|| ingest_once(&c.page, None, &ext)));
        let seen = state_knowing(&c.page, &ext);
        g.bench_function("ingest_seen", |b| {
            b.iter(|| ingest_once(&c.page, Some(&seen), &ext))
        });
        g.finish();
    }
    // The queue, ring group and IVR rules cost only calls that name a group: the same pages with
    // every group `action_type` turned into a plain DIAL are the baseline.
    let group_re = regex::bytes::Regex::new(
        r#""action_type"\s*:\s*"\s*(?i:QUEUE|RINGGROUP|IVR)\s*\[[^\]"]*\]\s*""#,
    )?;
    let degroup = |page: &[u8]| -> Vec<u8> {
        group_re
            .replace_all(page, &b"\"action_type\":\"DIAL\""[..])
            .into_owned()
    };
    let names_group = |e: &[u8]| group_re.is_match(e);
    let group_only: Vec<&[u8]> = all.iter().copied().filter(|e| names_group(e)).collect();
    anyhow::ensure!(
        group_only.len() >= PAGE,
        "too few entries naming a group: {}",
        group_only.len()
    );
    let group_cases = [
        ("mixed", cases[0].page.clone()),
        ("groups", page_of(&group_only[..PAGE])),
    ];
    for (name, page) in &group_cases {
        let plain = degroup(page);
        let mut g = crit.benchmark_group(format!("group-rules-{name}"));
        g.throughput(Throughput::Elements(PAGE as u64));
        g.bench_function("with", |b| b.iter(|| ingest_once(page, None, &ext)));
        g.bench_function("without", |b| b.iter(|| ingest_once(&plain, None, &ext)));
        g.finish();
    }
    crit.final_summary();

    let python = |page: &std::path::Path| -> Option<f64> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/ucm_poller.py");
        let out = std::process::Command::new("python3")
            .args([script, "ingest"])
            .arg(page)
            .arg("3")
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["entries_per_s"].as_f64()
    };
    for c in &cases {
        let (Some(floor), Some(ingest), Some(seen)) = (
            median_ns(&crit_dir, c.name, "floor"),
            median_ns(&crit_dir, c.name, "ingest"),
            median_ns(&crit_dir, c.name, "ingest_seen"),
        ) else {
            println!("no estimates for {} (a filtered run?)", c.name);
            continue;
        };
        let per_entry = ingest / PAGE as f64;
        let rate = 1e9 / per_entry;
        let what = match c.name {
            "mixed" => format!("mixed page ({mixed_grouped} of {PAGE} grouped)"),
            other => format!("{other} entries only"),
        };
        let py = python(&out.join(format!("page-{}.json", c.name)));
        let py_text = py.map_or_else(
            || "Python: not run (pip install prometheus_client requests)".to_string(),
            |py| format!("Python {py:.0}/s (Rust {:.0}x)", rate / py),
        );
        println!(
            "| Ingest | {what}, {:.2} MB / 1,000 entries | {rate:.0} entries/s, {per_entry:.0} ns/entry, {:.2}x floor (re-read of seen page {:.2}x); floor {:.0}/s; {py_text} | <= 3x floor, >= 300,000/s | {} |",
            c.page.len() as f64 / 1e6,
            ingest / floor,
            seen / floor,
            1e9 * PAGE as f64 / floor,
            holds(ingest / floor <= 3.0 && rate >= 300_000.0),
        );
    }
    for (name, page) in &group_cases {
        let id = format!("group-rules-{name}");
        let (Some(with), Some(without)) = (
            median_ns(&crit_dir, &id, "with"),
            median_ns(&crit_dir, &id, "without"),
        ) else {
            println!("no estimates for {id} (a filtered run?)");
            continue;
        };
        let naming = split_entries(page)
            .iter()
            .filter(|e| names_group(e))
            .count();
        println!(
            "| Ingest | queue, ring group and IVR rules: {name} page ({naming} of {PAGE} entries name a group) | {:.2}x the same page with every group action_type a plain DIAL ({:.0} vs {:.0} ns/entry) | <= 1.25x on the mixed page | {} |",
            with / without,
            with / PAGE as f64,
            without / PAGE as f64,
            holds(*name != "mixed" || with / without <= 1.25),
        );
    }
    Ok(())
}
