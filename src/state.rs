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
/// count, and the UCM's identity; 3: the keys packed (see [`packed_keys`]). Every earlier
/// format loads; a later one is refused.
pub const VERSION: u32 = 3;

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
    #[serde(with = "packed_keys")]
    pub calls: HashMap<u64, LocalSecs>,
    /// Leg keys seen: a call whose legs were all seen is not counted again even if its
    /// entry-level id changed.
    #[serde(with = "packed_keys")]
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

/// See [`PollState::head`].
#[derive(Debug, PartialEq)]
pub struct Head {
    url: String,
    baseline_start: LocalSecs,
    watermark: Option<LocalSecs>,
    trunks: Vec<String>,
    paging: Paging,
    windows: Option<Box<WindowRecord>>,
    series_since: Option<i64>,
    ucm: Option<UcmIdentity>,
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

    /// What the file holds besides the keys, the series and what pruning forgot: a commit
    /// that adds no key and no count and leaves this as the last write left it need not write
    /// at all, since the file then holds a state that differs only in keys the poller no longer
    /// needs (docs/design.md §4).
    pub fn head(&self) -> Head {
        Head {
            url: self.url.clone(),
            baseline_start: self.baseline_start,
            watermark: self.watermark,
            trunks: self.trunks.clone(),
            paging: self.paging,
            windows: self.windows.clone(),
            series_since: self.series_since,
            ucm: self.ucm.clone(),
        }
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

/// Call and leg keys in the file. From version 3, one base64 string of every key and its start
/// as two little-endian 64-bit integers, 16 bytes a pair: the state is written at every commit,
/// and tens of thousands of keys formatted as a JSON object of decimal numbers took a third of
/// that write. Versions 1 and 2 wrote an object of `"key": start`, which still loads.
mod packed_keys {
    use super::{HashMap, HashMapExt, LocalSecs};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::Serializer;

    const PAIR: usize = 16;

    pub fn serialize<S: Serializer>(
        keys: &HashMap<u64, LocalSecs>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(keys.len() * PAIR);
        for (key, start) in keys {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&start.to_le_bytes());
        }
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<u64, LocalSecs>, D::Error> {
        d.deserialize_any(Keys)
    }

    struct Keys;

    impl<'de> Visitor<'de> for Keys {
        type Value = HashMap<u64, LocalSecs>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("packed keys (a base64 string) or an object of key: start")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let bytes = STANDARD
                .decode(v)
                .map_err(|e| E::custom(format!("keys: not base64: {e}")))?;
            if bytes.len() % PAIR != 0 {
                return Err(E::custom(format!(
                    "keys: {} bytes is not a whole number of {PAIR}-byte pairs",
                    bytes.len()
                )));
            }
            let mut keys = HashMap::with_capacity(bytes.len() / PAIR);
            for pair in bytes.chunks_exact(PAIR) {
                let (key, start) = pair.split_at(8);
                keys.insert(
                    u64::from_le_bytes(key.try_into().expect("8 bytes")),
                    i64::from_le_bytes(start.try_into().expect("8 bytes")),
                );
            }
            Ok(keys)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys = HashMap::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((key, start)) = map.next_entry::<String, LocalSecs>()? {
                let key = key
                    .parse()
                    .map_err(|_| de::Error::custom(format!("keys: {key:?} is not a key")))?;
                keys.insert(key, start);
            }
            Ok(keys)
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

thread_local! {
    /// The encoded state, reused from write to write: a state of a few MB encoded into a new
    /// buffer each time pays for growing it and for the kernel's fresh pages.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest buffer [`ENCODED`] keeps between writes, per thread.
const ENCODED_KEEP: usize = 8 << 20;

/// Writes the state atomically: a crash leaves either the old or the new file, never a torn one.
///
/// The new state goes into `NAME.json.tmp`, overwritten in place, and then trades names with
/// `NAME.json` in one `renameat2(RENAME_EXCHANGE)`, so the temporary file keeps the previous
/// state and is the file the next write overwrites. Two inodes serve every write: a fleet that
/// created a file and deleted one at every commit spent a tenth of its CPU in the filesystem's
/// inode allocation. Where the exchange is not possible (no `NAME.json` yet, a filesystem or
/// kernel without it) a plain rename does the same job.
pub fn save(path: &Path, state: &PollState) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create state dir {}", dir.display()))?;
            open()
        }
        other => other,
    }
    .with_context(|| format!("cannot write {}", tmp.display()))?;
    ENCODED.with_borrow_mut(|data| {
        data.clear();
        // sonic-rs encodes the state in half the time serde_json takes, and every commit
        // writes it (`benches/state_write.rs`); serde_json reads it back.
        sonic_rs::to_writer(&mut *data, state).context("cannot encode the state")?;
        // Over the old bytes, then cut to length: the file's blocks are reused, not freed and
        // allocated again.
        f.write_all(data)
            .and_then(|()| f.set_len(data.len() as u64))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // Kept for the next write, unless a state far larger than usual grew it.
        if data.capacity() > ENCODED_KEEP {
            *data = Vec::new();
        }
        anyhow::Ok(())
    })?;
    f.sync_data()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    drop(f);
    exchange(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Gives `tmp` the name `path` and `path` the name `tmp` at once, or renames `tmp` over `path`
/// where there is no `path` or the filesystem cannot exchange names.
fn exchange(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            std::fs::rename(tmp, path)
        }
        Err(e) => Err(e.into()),
    }
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

    /// Two inodes serve every write: the temporary file keeps the previous state and is
    /// overwritten, cut to the new length, by the next write; the state file always loads whole.
    #[test]
    fn writes_trade_names_with_the_previous_state_and_cut_it_to_length() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(dir.path().join("new").as_path(), "office");
        let tmp = p.with_extension("json.tmp");
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut s = PollState::new("https://u", 1000);
        save(&p, &s).unwrap();
        assert!(!tmp.exists(), "the first write renames");
        let first = ino(&p);
        for k in 0..500 {
            s.calls.insert(k, 1000 + k as i64);
        }
        let long = s.clone();
        save(&p, &s).unwrap();
        assert_eq!(ino(&tmp), first, "the previous state keeps its inode");
        let second = ino(&p);
        s.calls.clear();
        s.watermark = Some(7);
        save(&p, &s).unwrap();
        assert_eq!((ino(&p), ino(&tmp)), (first, second), "no third inode");
        let read = |p: &Path| match load(p) {
            Loaded::Found(l) => *l,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            read(&p),
            s,
            "the short state, with nothing of the long one after it"
        );
        assert_eq!(read(&tmp), long);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            sonic_rs::to_vec(&s).unwrap().len() as u64
        );
    }

    #[test]
    fn keys_load_packed_or_as_the_object_of_versions_1_and_2_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(dir.path(), "office");
        let mut s = PollState::new("https://u", 1000);
        s.calls.insert(u64::MAX, -5);
        s.calls.insert(7, 1_772_618_310);
        s.legs.insert(0, 0);
        save(&p, &s).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(file["calls"].is_string(), "{text}");
        let mut old = file.clone();
        old["version"] = 2.into();
        old["calls"] = serde_json::json!({"18446744073709551615": -5, "7": 1_772_618_310});
        old["legs"] = serde_json::json!({"0": 0});
        std::fs::write(&p, old.to_string()).unwrap();
        match load(&p) {
            Loaded::Found(l) => assert_eq!(*l, s),
            other => panic!("{other:?}"),
        }
        for (calls, why) in [
            (serde_json::json!("not base64!"), "not base64"),
            (serde_json::json!("AAAA"), "3 bytes"),
            (serde_json::json!({"x": 1}), "\"x\" is not a key"),
        ] {
            let mut bad = file.clone();
            bad["calls"] = calls;
            std::fs::write(&p, bad.to_string()).unwrap();
            assert!(
                matches!(load(&p), Loaded::Unusable(m) if m.contains(why)),
                "{why}"
            );
        }
    }

    #[test]
    fn every_field_but_keys_and_counts_is_in_the_head_that_decides_a_write() {
        let file = serde_json::to_value(PollState::new("https://u", 0)).unwrap();
        let fields: Vec<&str> = file
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        // A field added to the state must be added to `Head` too, or a commit that changes
        // only it would not be written; then it belongs in this list.
        let not_in_head = ["version", "calls", "legs", "pruned_below", "series"];
        let in_head = [
            "url",
            "baseline_start",
            "watermark",
            "trunks",
            "paging",
            "windows",
            "series_since",
            "ucm",
        ];
        let mut want: Vec<&str> = not_in_head.iter().chain(&in_head).copied().collect();
        want.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(fields, want);
        let head = format!("{:?}", PollState::new("https://u", 0).head());
        for f in in_head {
            assert!(head.contains(&format!("{f}:")), "{f} missing from {head}");
        }
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
        std::fs::write(&p, br#"{"version":4,"url":"u","something":"new"}"#).unwrap();
        match load(&p) {
            Loaded::Newer(m) => {
                assert!(m.contains(&p.display().to_string()), "{m}");
                assert!(m.contains("version 4") && m.contains("1 to 3"), "{m}");
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
