//! Poll state of one target: the watermark and the de-duplication memory, and its file in
//! `state_dir`.
//!
//! All times are the UCM's own naive local clock (seconds since 1970-01-01T00:00:00 of that
//! clock, not Unix time), so the configured time zone can never make a call count twice or not
//! at all. Memory is bounded by the sweep window: keys older than it are pruned, and the poller
//! ignores records older than it.

use foldhash::HashMap;
use foldhash::HashMapExt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::clock::LocalSecs;
use crate::series::SeriesValues;

/// The format this exporter writes. 1: keys, watermark and what the UCM showed, in the forms
/// of `tests/fixtures/state/v1-*.json`; 2: also the call series' values, since when they
/// count, and the UCM's identity. Every earlier format loads; a later one is refused.
pub const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollState {
    pub version: u32,
    /// The UCM this state belongs to; state of another UCM is not reused.
    pub url: String,
    /// Nothing that started before this moment is ever counted: the first start's baseline.
    pub baseline_start: LocalSecs,
    /// Newest call start seen.
    pub watermark: Option<LocalSecs>,
    /// Call keys seen, with their start, for de-duplication across overlapping windows.
    pub calls: HashMap<u64, LocalSecs>,
    /// Leg keys seen: a call whose legs were all seen is not counted again even if its
    /// entry-level id changed.
    pub legs: HashMap<u64, LocalSecs>,
    /// Trunks seen or listed by the UCM, so their zero series exist after a restart.
    #[serde(default)]
    pub trunks: Vec<String>,
    /// Keys of calls that started before this were forgotten: nothing older is ever read again,
    /// even when a larger `max_call_duration` after a restart would reach further back.
    #[serde(default)]
    pub pruned_below: Option<LocalSecs>,
    /// What the UCM has shown of its paging.
    #[serde(default)]
    pub paging: Paging,
    /// What the window modes found on this UCM, so a restart continues with them.
    #[serde(default)]
    pub windows: Option<Box<WindowRecord>>,
    /// The call series' values as of the keys above, written together with them.
    #[serde(default)]
    pub series: SeriesValues,
    /// Unix time when the series started from zero (this state's first commit; for a state of
    /// version 1, its first start under version 2).
    #[serde(default)]
    pub series_since: Option<i64>,
    /// The UCM's identity as it reported it, so a changed URL to the same UCM keeps the state.
    #[serde(default)]
    pub ucm: Option<UcmIdentity>,
}

/// Who a UCM is, whatever its URL: its serial number and MAC address as
/// `getSystemGeneralStatus` and `getSystemStatus` report them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UcmIdentity {
    pub serial: Option<String>,
    pub mac: Option<String>,
}

impl UcmIdentity {
    /// Whether both name the same UCM: an equal serial number, or else an equal MAC; `None`
    /// when neither has a value both know.
    pub fn same_as(&self, other: &UcmIdentity) -> Option<bool> {
        let norm = |s: &Option<String>| {
            s.as_deref()
                .map(|v| v.trim().to_ascii_lowercase().replace([':', '-'], ""))
                .filter(|v| !v.is_empty())
        };
        if let (Some(a), Some(b)) = (norm(&self.serial), norm(&other.serial)) {
            return Some(a == b);
        }
        match (norm(&self.mac), norm(&other.mac)) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        self.same_as(self).is_some()
    }
}

impl PollState {
    pub fn new(url: &str, baseline_start: LocalSecs) -> Self {
        PollState {
            version: VERSION,
            url: url.to_string(),
            baseline_start,
            watermark: None,
            calls: HashMap::new(),
            legs: HashMap::new(),
            trunks: Vec::new(),
            pruned_below: None,
            paging: Default::default(),
            windows: None,
            series: SeriesValues::default(),
            series_since: None,
            ucm: None,
        }
    }

    /// The oldest call start the poller still tracks, for a reach of `reach` seconds back from
    /// the watermark; older records are outside every window.
    pub fn horizon(&self, reach: i64) -> LocalSecs {
        self.watermark
            .map_or(self.baseline_start, |w| w.saturating_sub(reach))
            .max(self.baseline_start)
            .max(self.pruned_below.unwrap_or(LocalSecs::MIN))
    }

    /// Forgets keys older than `horizon`, and remembers that it did.
    pub fn prune(&mut self, horizon: LocalSecs) {
        if self.pruned_below.is_some_and(|p| p >= horizon) {
            return;
        }
        self.pruned_below = Some(horizon);
        self.calls.retain(|_, s| *s >= horizon);
        self.legs.retain(|_, s| *s >= horizon);
        // A baseline or catch-up grows the maps far past what the window holds afterwards; the
        // slack would stay resident for the life of the process.
        for map in [&mut self.calls, &mut self.legs] {
            if map.capacity() > 4 * map.len().max(1024) {
                map.shrink_to_fit();
            }
        }
    }
}

/// What a target's UCM has shown of its paging, kept in the state file so it is learned once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    /// The UCM answered at most this many entries per page although it was asked for more.
    pub cap: Option<usize>,
    /// The largest page the UCM has served (up to the 1000 a page asks for). A cap, if any, is at least
    /// this large (or exactly this: that page may have been a capped one), so a page of fewer
    /// entries is the end of a read. Once a page of 1000 was served, every short page is.
    pub largest_page: usize,
    /// The UCM reads `startTime` as UTC, not as the local time of its CDRs: windows are sent
    /// converted to UTC.
    #[serde(default)]
    pub filter_reads_utc: bool,
    /// The UCM serves the first page again whatever `offset` says: reads go in time slices.
    #[serde(default)]
    pub offset_ignored: bool,
}

/// What the window modes found on a UCM (docs/design.md §2.4): the probes' verdicts, when they
/// are asked again, and a fallback, kept so that a restart neither probes again before its time
/// nor forgets that the fast modes missed calls. Times are Unix seconds of this host's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowRecord {
    /// The mode in use: `start`, `end` or `channels`.
    pub mode: String,
    /// The spelling of the end-filter parameter the UCM honours, once proven.
    pub end_param: Option<String>,
    /// Whether its end windows return the calls that failed; null until asked.
    pub end_sees_failed: Option<bool>,
    /// When the end probe is asked again; null: at the first poll.
    pub end_probe_due: Option<i64>,
    /// Whether the channel lists can bound windows; null until tried.
    pub channels_allowed: Option<bool>,
    /// When the channel lists are tried again.
    pub channels_check_due: Option<i64>,
    /// Why a safety sweep made the target give the fast modes up, if it did.
    pub fallback: Option<String>,
    /// When the fast modes are examined again after the fallback.
    pub fallback_until: Option<i64>,
}

/// Outcome of reading a state file.
#[derive(Debug)]
pub enum Loaded {
    /// A usable state, upgraded to this version's form when it was older. Its `url` may not be
    /// the target's: the ledger decides whether it is the same UCM.
    Found(Box<PollState>),
    /// No file: the first start of this target.
    Missing,
    /// A file that could not be used; the reason is logged and a new baseline taken.
    Unusable(String),
    /// A file written by a later version of the exporter: it is left as it is, and the target
    /// is not polled until that version runs again or the file is moved away.
    Newer(String),
}

pub fn path_for(state_dir: &Path, target: &str) -> PathBuf {
    state_dir.join(format!("{target}.json"))
}

pub fn load(path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Unusable(format!("cannot read {}: {e}", path.display())),
    };
    let corrupt =
        |e: &dyn std::fmt::Display| Loaded::Unusable(format!("{} is corrupt: {e}", path.display()));
    let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return corrupt(&e),
    };
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v > u64::from(VERSION) => {
            return Loaded::Newer(format!(
                "{} is of state format version {v}, written by a later ucm-exporter; this one \
                 reads versions 1 to {VERSION}. The file is left as it is and the target is not \
                 polled: run the later version, or move the file away to take a new baseline",
                path.display()
            ))
        }
        Some(1..) => upgrade(&mut value),
        _ => return corrupt(&"no version"),
    }
    match PollState::deserialize(value) {
        Ok(s) => Loaded::Found(Box::new(s)),
        Err(e) => corrupt(&e),
    }
}

/// Brings a state of any earlier version to this version's form. Version 1 went through these
/// forms (`tests/fixtures/state/`): the paging record appeared with `cap` and
/// `short_page_ends` (the largest page shown to end a read, which is a page the UCM served: a
/// sound `largest_page`), then `largest_page` replaced it; `"paging": null` stands for nothing
/// learned. Fields added later have defaults.
fn upgrade(value: &mut serde_json::Value) {
    let Some(state) = value.as_object_mut() else {
        return;
    };
    if state.get("paging").is_some_and(serde_json::Value::is_null) {
        state.remove("paging");
    }
    if let Some(paging) = state.get_mut("paging").and_then(|p| p.as_object_mut()) {
        if !paging.contains_key("largest_page") {
            let largest = paging.remove("short_page_ends").unwrap_or_else(|| 0.into());
            paging.insert("largest_page".into(), largest);
        }
    }
    state.insert("version".into(), VERSION.into());
}

/// Writes the state atomically: a crash leaves either the old or the new file, never a torn one.
pub fn save(path: &Path, state: &PollState) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create state dir {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec(state).expect("state encodes");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&data)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Moves an unusable state file aside so it can be inspected, instead of overwriting it.
pub fn quarantine(path: &Path) {
    if path.exists() {
        let aside = path.with_extension("json.bad");
        if let Err(e) = std::fs::rename(path, &aside) {
            tracing::warn!(error = %e, "cannot move the unusable state file aside");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(dir.path(), "office");
        let mut s = PollState::new("https://u", 1000);
        s.watermark = Some(5000);
        s.calls.insert(1, 900);
        s.calls.insert(2, 4000);
        s.legs.insert(3, 4000);
        save(&p, &s).unwrap();
        match load(&p) {
            Loaded::Found(l) => assert_eq!(*l, s),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.horizon(3600), 1400);
        s.prune(s.horizon(3600));
        assert_eq!(s.calls.len(), 1);
    }

    #[test]
    fn corrupt_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(dir.path(), "x");
        assert!(matches!(load(&p), Loaded::Missing));
        std::fs::write(&p, b"{\"version\":1,\"url\":").unwrap();
        assert!(matches!(load(&p), Loaded::Unusable(m) if m.contains("corrupt")));
        std::fs::write(&p, b"{\"url\":\"u\"}").unwrap();
        assert!(matches!(load(&p), Loaded::Unusable(m) if m.contains("no version")));
        quarantine(&p);
        assert!(!p.exists());
        assert!(p.with_extension("json.bad").exists());
    }

    #[test]
    fn a_later_version_is_refused_with_the_file_and_both_versions_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(dir.path(), "x");
        std::fs::write(&p, br#"{"version":3,"url":"u","something":"new"}"#).unwrap();
        match load(&p) {
            Loaded::Newer(m) => {
                assert!(m.contains(&p.display().to_string()), "{m}");
                assert!(m.contains("version 3") && m.contains("1 to 2"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identities_compare_by_serial_then_mac() {
        let id = |serial: Option<&str>, mac: Option<&str>| UcmIdentity {
            serial: serial.map(str::to_string),
            mac: mac.map(str::to_string),
        };
        let a = id(Some("SN1"), Some("00:0B:82:01:02:03"));
        assert_eq!(a.same_as(&id(Some("sn1"), None)), Some(true));
        assert_eq!(
            a.same_as(&id(Some("SN2"), Some("00:0B:82:01:02:03"))),
            Some(false)
        );
        assert_eq!(a.same_as(&id(None, Some("000b82010203"))), Some(true));
        assert_eq!(a.same_as(&id(None, Some("000b82010204"))), Some(false));
        assert_eq!(a.same_as(&id(None, None)), None);
        assert!(a.is_known() && !id(Some(" "), None).is_known());
    }
}
