//! `ucm-exporter backfill`: a target's past calls as OpenMetrics for
//! `promtool tsdb create-blocks-from openmetrics`, so that graphs start with the UCM's history
//! rather than with the exporter's first poll (docs/design.md §10).
//!
//! The range is read one day at a time (`slice`), each day paged and de-duplicated as a poll
//! pages and de-duplicates, and counted into the same [`TargetMetrics`] the live exporter serves
//! (`series`), so that names and labels cannot drift apart. After each day the samples are
//! appended to the output and the progress is saved (`progress`): a run stopped at any point
//! continues with the first day it had not finished, and counts nothing twice.

mod progress;
mod series;
mod slice;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;

use crate::clock::Zone;
use crate::clock::{from_local_secs, local_secs, LocalSecs, SharedClock};
use crate::config::{Settings, Target};
use crate::metrics::TargetMetrics;
use crate::state::{self, Loaded};
use crate::ucm::login_guard::LoginGuard;
use crate::ucm::Session;
use crate::ucm_clock::UcmClock;

use progress::{Progress, Run};
use series::Series;
use slice::{Grid, Reader};

/// What one read covers: a day of the UCM's clock, so that a read's keys and tallies stay
/// bounded whatever the range, and a stopped run loses at most a day's requests.
pub const SLICE: i64 = 24 * 3600;

/// What `ucm-exporter backfill` was asked for.
#[derive(Debug, Clone)]
pub struct Args {
    pub target: String,
    /// The UCM's local time: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS`.
    pub from: String,
    /// As `from`, exclusive; by default where the live poll state's baseline starts.
    pub to: Option<String>,
    pub output: PathBuf,
    pub step: Duration,
    /// Labels added to every sample, as the scrape of the live series adds them.
    pub labels: Vec<(String, String)>,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub slices: usize,
    pub calls: u64,
    pub requests: usize,
    /// The output was complete before this run.
    pub already_done: bool,
}

/// Parses a date or date-time of the UCM's clock.
pub fn parse_time(s: &str) -> Result<LocalSecs> {
    let t = s.trim();
    let parsed = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        })
        .with_context(|| {
            format!("{s:?} is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (the UCM's local time)")
        })?;
    Ok(local_secs(parsed))
}

/// Parses `NAME=VALUE` of `--label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if !valid {
        return Err(format!("{name:?} is not a label name"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Runs a backfill to its end, or to the first error; what was finished before stays.
pub async fn run(settings: &Settings, args: &Args, clock: SharedClock) -> Result<Summary> {
    let target = pick(settings, &args.target)?;
    let guard = LoginGuard::new(&settings.state_dir, &target.url, &target.username);
    let session =
        Arc::new(Session::new(target, clock.clone(), Arc::new(()))?.with_login_guard(guard, false));
    let zone = zone(target, &session, &clock).await?;
    let (from, to) = range(settings, target, args, &clock, zone)?;
    let run = Run {
        target: target.name.clone(),
        url: target.url.clone(),
        from: from_local_secs(from).to_string(),
        to: from_local_secs(to).to_string(),
        step_secs: args.step.as_secs(),
        labels: args.labels.clone(),
    };
    let Some(mut progress) = Progress::open(&args.output, run, from)? else {
        tracing::info!(output = %args.output.display(), "backfill already complete");
        return Ok(Summary {
            already_done: true,
            ..Summary::default()
        });
    };
    if progress.next > from {
        tracing::info!(from = %from_local_secs(progress.next), "resuming the backfill");
    }
    let metrics =
        TargetMetrics::with_service_levels(settings.extension_max, &settings.service_levels);
    let mut series = Series::new(progress.totals.clone(), &args.labels);
    let step = args.step.as_secs() as i64;
    let mut summary = Summary::default();
    let result = async {
        while progress.next < to {
            let (a, b) = (progress.next, (progress.next + SLICE).min(to));
            let began = Instant::now();
            let mut reader = Reader {
                session: &session,
                extensions: &settings.extension_pattern,
                tz: zone,
                paging: &mut progress.paging,
                clock: &clock,
            };
            let grid = Grid::new(a, b, step, zone);
            let read = reader.read(&grid).await?;
            let mut out = progress.append()?;
            series.write_slice(&grid, read.steps, &metrics, &mut out)?;
            progress.commit(out, b, series.totals())?;
            tracing::info!(
                from = %from_local_secs(a),
                to = %from_local_secs(b),
                calls = read.calls,
                requests = read.requests,
                elapsed = format!("{:.2}s", began.elapsed().as_secs_f64()),
                "backfilled"
            );
            summary.slices += 1;
            summary.calls += read.calls;
            summary.requests += read.requests;
        }
        progress.finish()
    }
    .await;
    session.logout().await;
    result.map(|()| summary)
}

/// The zone the range's times are read in: the configured one, whose rules give each day its
/// offset; else the UTC offset the UCM reports now, for the whole range (docs/design.md §2.6),
/// which puts the calls on the far side of a DST change an hour off: a range across one wants
/// `timezone` set.
async fn zone(target: &Target, session: &Session, clock: &SharedClock) -> Result<Zone> {
    if let Some(tz) = target.timezone {
        return Ok(Zone::Named(tz));
    }
    let ucm = UcmClock::new(
        target,
        clock.clone(),
        Arc::new(TargetMetrics::new(1)),
        Arc::default(),
    );
    ucm.read(session).await?;
    let zone = ucm.zone();
    tracing::warn!(
        %zone,
        "timezone not set: the whole range is read in this zone ({}); set timezone for a range \
         across a DST change",
        ucm.describe()
    );
    Ok(zone)
}

fn pick<'a>(settings: &'a Settings, name: &str) -> Result<&'a Target> {
    settings
        .targets
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = settings.targets.iter().map(|t| t.name.as_str()).collect();
            anyhow::anyhow!(
                "no target named {name:?} in the configuration (targets: {})",
                names.join(", ")
            )
        })
}

/// `[from, to)` in the UCM's clock. Without `--to`, the backfill ends where the live poll
/// state's baseline starts: the live counters count no call that started before it, and the
/// backfill none that started at or after it.
fn range(
    settings: &Settings,
    target: &Target,
    args: &Args,
    clock: &SharedClock,
    zone: Zone,
) -> Result<(LocalSecs, LocalSecs)> {
    let from = parse_time(&args.from).context("--from")?;
    let to = match &args.to {
        Some(t) => parse_time(t).context("--to")?,
        None => {
            let path = state::path_for(&settings.state_dir, &target.name);
            match state::load(&path) {
                Loaded::Found(s) => s.baseline_start,
                Loaded::Missing => bail!(
                    "no poll state of {:?} in {}: give --to (the exporter counts calls from its first start on; \
                     see README: Backfill)",
                    target.name,
                    settings.state_dir.display()
                ),
                Loaded::Unusable(why) | Loaded::Newer(why) => bail!("{why}: give --to"),
            }
        }
    };
    if from >= to {
        bail!(
            "--from {} is not before --to {}",
            from_local_secs(from),
            from_local_secs(to)
        );
    }
    let now = local_secs(clock.local_now(zone));
    if to > now {
        bail!(
            "--to {} is in the future of the UCM's clock ({}): calls still in progress have no record yet",
            from_local_secs(to),
            from_local_secs(now)
        );
    }
    if args.step < Duration::from_secs(1) {
        bail!("--step must be at least 1s");
    }
    Ok((from, to))
}
