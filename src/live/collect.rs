//! One run of each live-status collector: its requests, and the series they give.
//!
//! Each run builds its families as plain data, encodes them once and hands them over whole, so
//! that a trunk that disappeared leaves no stale series, a scrape never sees half a run, and a
//! scrape only copies the text.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::values;
use crate::cdr::{ExtensionPattern, GroupKind};
use crate::clock::Zone;
use crate::clock::{local_secs, LocalSecs};
use crate::error::UcmError;
use crate::exposition::Encoded;
use crate::metrics::{TargetMetrics, MAX_GROUPS};
use crate::ucm::is_refusal;
use crate::ucm::lists::{all_rows, rows_of};
use crate::ucm::{decode_envelope, Session};
use crate::ucm_clock::UcmClock;

/// One gauge family of a run: its series by label values, kept in the order of the sorted label
/// names, which is how the text format writes them and a registry sorts them.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    sorted: Vec<&'static str>,
    /// For each sorted label name, where it is among the names the family was made with.
    order: Vec<usize>,
    series: BTreeMap<Vec<String>, f64>,
}

impl Gauge {
    pub fn new(name: &'static str, help: &'static str, labels: &[&'static str]) -> Self {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|&i| labels[i]);
        Gauge {
            name,
            help,
            sorted: order.iter().map(|&i| labels[i]).collect(),
            order,
            series: BTreeMap::new(),
        }
    }

    /// `values` in the order of the names the family was made with.
    fn key(&self, values: &[&str]) -> Vec<String> {
        assert_eq!(
            values.len(),
            self.order.len(),
            "{}: label values",
            self.name
        );
        self.order.iter().map(|&i| values[i].to_string()).collect()
    }

    pub fn set(&mut self, values: &[&str], v: f64) {
        let k = self.key(values);
        self.series.insert(k, v);
    }

    pub fn inc(&mut self, values: &[&str]) {
        let k = self.key(values);
        *self.series.entry(k).or_default() += 1.0;
    }
}

/// A run's families, each encoded once it is complete.
#[derive(Default)]
pub struct Families(Vec<Encoded>);

impl Families {
    /// Adds a family; one without series is left out, as a registry leaves it out.
    pub fn add(&mut self, g: Gauge) {
        if !g.series.is_empty() {
            self.0.push(Encoded::new(
                g.name,
                g.help,
                "gauge",
                &g.sorted,
                g.series.iter().map(|(k, v)| (k, *v)),
            ));
        }
    }

    /// The families sorted by name, as the text format has them.
    pub fn into_encoded(mut self) -> Vec<Encoded> {
        self.0.sort_by_key(Encoded::name);
        self.0
    }
}

/// What a collector needs besides the session.
pub struct Context<'a> {
    pub session: &'a Session,
    pub metrics: &'a TargetMetrics,
    pub extensions: &'a ExtensionPattern,
    pub tz: Zone,
    /// Told the UCM's `system-time` whenever the system collector reads it.
    pub ucm_clock: &'a UcmClock,
    /// This host's clock in the UCM's zone, for ages of calls and waits.
    pub now: LocalSecs,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

/// Any JSON scalar as text: the UCM mixes strings and numbers.
fn scalar(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn yes(v: &Value, key: &str) -> bool {
    text(v, key).eq_ignore_ascii_case("yes")
}

fn local_time(s: &str) -> Option<LocalSecs> {
    chrono::NaiveDateTime::parse_from_str(&s.trim().replace('T', " "), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(local_secs)
}

async fn envelope(
    session: &Session,
    action: &str,
    params: Map<String, Value>,
) -> Result<Value, UcmError> {
    session.call(action, params, |b| decode_envelope(b)).await
}

/// What `getSystemGeneralStatus` last said, and of which boot. Model and firmware change only
/// with an upgrade, which reboots the UCM, so they are asked again only when the boot time
/// moves, or after [`GENERAL_MAX_AGE`]: one request a cycle less for every UCM of a fleet.
pub struct General {
    model: String,
    firmware: String,
    boot: Option<i64>,
    /// Monotonic time of the reading.
    read_at: Duration,
}

pub const GENERAL_MAX_AGE: Duration = Duration::from_secs(3600);

/// How far two readings of the boot time (system-time minus up-time, each to the second, read
/// a request apart) may differ and still be the same boot. A reboot takes longer; a clock step
/// beyond it only costs a request.
const SAME_BOOT: i64 = 30;

/// `ucm_info` and `ucm_boot_time_seconds`: `getSystemStatus`, and `getSystemGeneralStatus`
/// unless `general` still holds for this boot. `monotonic` is the exporter's monotonic time.
pub async fn system(
    cx: &Context<'_>,
    general: &mut Option<General>,
    monotonic: Duration,
) -> Result<Families, UcmError> {
    let status = envelope(cx.session, "getSystemStatus", Map::new()).await?;
    cx.ucm_clock.observe(text(&status, "system-time"));
    let now = values::system_time(text(&status, "system-time"), cx.tz);
    let up = values::uptime(&scalar(&status, "up-time"));
    let boot = now
        .zip(up)
        .map(|(now, up)| now - i64::try_from(up).unwrap_or(0));
    let holds = |g: &General| {
        g.boot
            .zip(boot)
            .is_some_and(|(was, is)| (was - is).abs() <= SAME_BOOT)
            && monotonic.saturating_sub(g.read_at) < GENERAL_MAX_AGE
    };
    let g = match general.take() {
        Some(g) if holds(&g) => general.insert(g),
        _ => {
            let answer = envelope(cx.session, "getSystemGeneralStatus", Map::new()).await?;
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            general.insert(General {
                model: words(text(&answer, "product-model")),
                firmware: text(&answer, "prog-version").to_string(),
                boot,
                read_at: monotonic,
            })
        }
    };
    let mut f = Families::default();
    let mut info = Gauge::new(
        "ucm_info",
        "Model, firmware, serial number and MAC address of the UCM (getSystemGeneralStatus, getSystemStatus); always 1.",
        &["model", "firmware", "serial_number", "mac"],
    );
    info.set(
        &[
            &g.model,
            &g.firmware,
            text(&status, "serial-number"),
            &text(&status, "mac").to_ascii_lowercase(),
        ],
        1.0,
    );
    f.add(info);
    match boot {
        Some(boot) => {
            let mut gauge = Gauge::new(
                "ucm_boot_time_seconds",
                "Unix time the UCM booted: its system-time minus its up-time (getSystemStatus).",
                &[],
            );
            gauge.set(&[], boot as f64);
            f.add(gauge);
        }
        None => tracing::debug!(
            up_time = %scalar(&status, "up-time"),
            system_time = text(&status, "system-time"),
            "cannot read the UCM's up-time or system time; no ucm_boot_time_seconds"
        ),
    }
    Ok(f)
}

/// Where trunk status comes from on this UCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkSource {
    /// `listAllTrunk`: every trunk and its status, one request.
    AllTrunks,
    /// `listVoIPTrunk`, then `getSIPTrunk` per trunk, whose answer carries a status.
    PerTrunk,
}

/// `ucm_trunk_up` and `ucm_trunk_status`. `source` is what worked before; `None` tries
/// `listAllTrunk`, then the per-trunk reading.
pub async fn trunks(
    cx: &Context<'_>,
    source: &mut Option<TrunkSource>,
) -> Result<Families, UcmError> {
    let rows = match *source {
        Some(TrunkSource::AllTrunks) => {
            all_rows(cx.session, "listAllTrunk", &Map::new(), "trunks").await?
        }
        Some(TrunkSource::PerTrunk) => per_trunk_rows(cx).await?,
        None => match all_rows(cx.session, "listAllTrunk", &Map::new(), "trunks").await {
            Ok(rows) => {
                *source = Some(TrunkSource::AllTrunks);
                rows
            }
            Err(e) if is_refusal(&e) => {
                tracing::info!("listAllTrunk is not available ({e}); reading listVoIPTrunk and getSIPTrunk per trunk");
                let rows = per_trunk_rows(cx).await?;
                *source = Some(TrunkSource::PerTrunk);
                rows
            }
            Err(e) => return Err(e),
        },
    };
    let mut up = Gauge::new(
        "ucm_trunk_up",
        "1 if the trunk is registered or reachable, 0 if not; absent while unmonitored or disabled (listAllTrunk).",
        &["trunk", "type"],
    );
    let mut status = Gauge::new(
        "ucm_trunk_status",
        "1 for the trunk's current status, normalised (listAllTrunk; README, Metrics).",
        &["trunk", "status"],
    );
    for r in &rows {
        let name = text(r, "trunk_name");
        if name.is_empty() {
            continue;
        }
        let kind = match text(r, "type") {
            "" => text(r, "trunk_type"),
            t => t,
        }
        .to_ascii_lowercase();
        let (label, is_up) = values::trunk_status(text(r, "status"), yes(r, "out_of_service"));
        status.set(&[name, label], 1.0);
        if let Some(u) = is_up {
            up.set(&[name, &kind], f64::from(u8::from(u)));
        }
    }
    let mut f = Families::default();
    f.add(up);
    f.add(status);
    Ok(f)
}

/// Trunk rows from `listVoIPTrunk` plus `getSIPTrunk` per trunk; refused (as the firmware not
/// knowing it) when the per-trunk answers carry no status.
async fn per_trunk_rows(cx: &Context<'_>) -> Result<Vec<Value>, UcmError> {
    let mut params = Map::new();
    params.insert(
        "options".into(),
        "trunk_index,trunk_name,trunk_type,out_of_service".into(),
    );
    let list = all_rows(cx.session, "listVoIPTrunk", &params, "voip_trunk").await?;
    let mut rows = Vec::new();
    for t in list {
        let mut p = Map::new();
        p.insert("trunk".into(), scalar(&t, "trunk_index").into());
        let resp = envelope(cx.session, "getSIPTrunk", p).await?;
        let trunk = resp.get("trunk").cloned().unwrap_or(Value::Null);
        if trunk.get("status").is_none() {
            return Err(UcmError::Protocol(
                "neither listAllTrunk nor getSIPTrunk gives a trunk status on this UCM".into(),
            ));
        }
        let mut row = t.as_object().cloned().unwrap_or_default();
        row.insert("status".into(), trunk["status"].clone());
        rows.push(Value::Object(row));
    }
    Ok(rows)
}

/// `ucm_extensions` and `ucm_extension_registered`, from every page of `listAccount`.
pub async fn extensions(cx: &Context<'_>) -> Result<Families, UcmError> {
    let mut params = Map::new();
    params.insert("options".into(), "extension,status,out_of_service".into());
    let rows = all_rows(cx.session, "listAccount", &params, "account").await?;
    let mut by_status = Gauge::new(
        "ucm_extensions",
        "Local extensions by status: idle, inuse, ringing, busy, hold, unavailable, disabled, … (listAccount).",
        &["status"],
    );
    let mut registered = Gauge::new(
        "ucm_extension_registered",
        "1 if the extension is registered, 0 if not or out of service (listAccount), under extensions.max.",
        &["extension"],
    );
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        let ext = scalar(r, "extension");
        if !cx.extensions.is_local(&ext) {
            continue;
        }
        let st = values::extension_status(text(r, "status"), yes(r, "out_of_service"));
        *counts.entry(st).or_default() += 1;
        if let Some(label) = cx.metrics.extension_label(&ext) {
            registered.set(&[&label], f64::from(u8::from(values::registered(st))));
        }
    }
    for (st, n) in counts {
        by_status.set(&[st], n as f64);
    }
    let mut f = Families::default();
    f.add(by_status);
    f.add(registered);
    Ok(f)
}

/// `ucm_active_calls`, `ucm_active_channels` and `ucm_active_call_oldest_seconds`.
pub async fn channels(cx: &Context<'_>) -> Result<Families, UcmError> {
    let bridged = all_rows(cx.session, "listBridgedChannels", &Map::new(), "channel").await?;
    let unbridged = all_rows(cx.session, "listUnBridgedChannels", &Map::new(), "channel").await?;
    let mut f = Families::default();
    let mut calls = Gauge::new(
        "ucm_active_calls",
        "Calls in progress with two parties connected (listBridgedChannels).",
        &[],
    );
    calls.set(&[], bridged.len() as f64);
    f.add(calls);
    let mut states = Gauge::new(
        "ucm_active_channels",
        "Channels in progress by state: bridged, and the unbridged ones the UCM's Active Calls page shows (ringing, dialing, up, …).",
        &["state"],
    );
    states.set(&["bridged"], (bridged.len() * 2) as f64);
    for r in &unbridged {
        if let Some(st) =
            values::channel_state(text(r, "state"), text(r, "channel"), text(r, "service"))
        {
            states.inc(&[st]);
        }
    }
    f.add(states);
    let oldest = bridged
        .iter()
        .filter_map(|r| local_time(text(r, "bridge_time")))
        .min();
    let mut age = Gauge::new(
        "ucm_active_call_oldest_seconds",
        "Age of the oldest bridged call (since its bridge_time), 0 with none.",
        &[],
    );
    age.set(&[], oldest.map_or(0, |t| (cx.now - t).max(0)) as f64);
    f.add(age);
    Ok(f)
}

/// The queue rows of `getQueueCalling`/`getCallQueuesMemberMessage`: under `member` of an
/// object, or the array itself (firmware differ).
fn members(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(rows)) => rows,
        Some(o @ Value::Object(_)) => rows_of(o, "member"),
        _ => &[],
    }
}

/// `ucm_queue_callers_waiting`, `ucm_queue_longest_wait_seconds`, `ucm_queue_members`: one
/// request for the queues, then two for each of the first `max_queues` of them, in extension
/// order; `ucm_queues_skipped` counts the rest, which are not read (README, Live status).
pub async fn queues(cx: &Context<'_>, max_queues: usize) -> Result<Families, UcmError> {
    let list = envelope(cx.session, "getCallQueuesMessage", Map::new()).await?;
    let mut queues: Vec<String> = rows_of(&list, "CallQueuesMessage")
        .iter()
        .map(|q| scalar(q, "extension"))
        .filter(|q| !q.is_empty())
        .collect();
    queues.sort();
    queues.dedup();
    let skipped = queues.len().saturating_sub(max_queues);
    queues.truncate(max_queues);
    let mut f = Families::default();
    let mut skipped_gauge = Gauge::new(
        "ucm_queues_skipped",
        "Call queues not read because the UCM has more than max_queues_per_run of them (getCallQueuesMessage).",
        &[],
    );
    skipped_gauge.set(&[], skipped as f64);
    f.add(skipped_gauge);
    if skipped > 0 {
        tracing::debug!(
            skipped,
            max_queues,
            "more call queues than max_queues_per_run: the rest are not read"
        );
    }
    let mut waiting = Gauge::new(
        "ucm_queue_callers_waiting",
        "Callers waiting in the call queue now (getQueueCalling).",
        &["queue"],
    );
    let mut longest = Gauge::new(
        "ucm_queue_longest_wait_seconds",
        "How long the caller waiting longest has waited, 0 with none (getQueueCalling).",
        &["queue"],
    );
    let mut member_states = Gauge::new(
        "ucm_queue_members",
        "Members of the call queue by status (getCallQueuesMemberMessage).",
        &["queue", "status"],
    );
    for q in &queues {
        let mut p = Map::new();
        p.insert("extension".into(), q.clone().into());
        let calling = envelope(cx.session, "getQueueCalling", p.clone()).await?;
        let rows = members(calling.get("CallQueues"));
        waiting.set(&[q], rows.len() as f64);
        let first = rows
            .iter()
            .filter_map(|r| local_time(text(r, "starttime")))
            .min();
        longest.set(&[q], first.map_or(0, |t| (cx.now - t).max(0)) as f64);
        let m = envelope(cx.session, "getCallQueuesMemberMessage", p).await?;
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for r in members(m.get("CallQueueMembersMessage")) {
            *counts
                .entry(values::extension_status(text(r, "status"), false))
                .or_default() += 1;
        }
        for (st, n) in counts {
            member_states.set(&[q, st], n as f64);
        }
    }
    f.add(waiting);
    f.add(longest);
    f.add(member_states);
    Ok(f)
}

/// `ucm_group_info`: the names of queues, ring groups and IVRs, one list each. A list this API
/// user may not read (ring groups often answer -47) only leaves those groups without names; the
/// collector fails only when all three are refused. Listed groups also get their zero series.
pub async fn groups(cx: &Context<'_>) -> Result<Families, UcmError> {
    const LISTS: [(GroupKind, &str, &str, &[&str]); 3] = [
        (
            GroupKind::Queue,
            "listQueue",
            "queue",
            &["queue_name", "queuename", "name"],
        ),
        (
            GroupKind::RingGroup,
            "listRingGroup",
            "ringgroup",
            &["ringgroup_name", "name"],
        ),
        (GroupKind::Ivr, "listIVR", "ivr", &["ivr_name", "name"]),
    ];
    let mut info = Gauge::new(
        "ucm_group_info",
        "Names of queues, ring groups and IVRs, always 1 (listQueue, listRingGroup, listIVR); join on kind and group.",
        &["kind", "group", "name"],
    );
    let mut refused = Vec::new();
    for (kind, action, key, name_keys) in LISTS {
        let rows = match all_rows(cx.session, action, &Map::new(), key).await {
            Ok(rows) => rows,
            Err(e) if is_refusal(&e) => {
                tracing::debug!(action, "group names not readable: {e}");
                refused.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let listed: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                let name = name_keys
                    .iter()
                    .map(|k| scalar(r, k))
                    .find(|n| !n.is_empty())
                    .unwrap_or_default();
                (scalar(r, "extension"), name)
            })
            .filter(|(g, _)| !g.is_empty() && g.len() <= 32)
            .take(MAX_GROUPS)
            .collect();
        cx.metrics
            .add_groups(listed.iter().map(|(g, _)| (kind, g.as_str())));
        for (group, name) in &listed {
            if !name.is_empty() {
                info.set(&[kind.as_str(), group, name], 1.0);
            }
        }
    }
    match refused.pop() {
        Some(e) if refused.len() + 1 == LISTS.len() => Err(e),
        _ => {
            let mut f = Families::default();
            f.add(info);
            Ok(f)
        }
    }
}

/// `ucm_storage_used_bytes` and `ucm_storage_size_bytes` per partition (getStorageUsage).
pub async fn storage(cx: &Context<'_>) -> Result<Families, UcmError> {
    let resp = envelope(cx.session, "getStorageUsage", Map::new()).await?;
    let body = resp.get("body").unwrap_or(&resp);
    let by_disk = |key: &str| -> BTreeMap<String, f64> {
        rows_of(body, key)
            .iter()
            .filter_map(|r| {
                Some((
                    scalar(r, "diskname"),
                    values::size_bytes(&scalar(r, "value"))?,
                ))
            })
            .filter(|(d, _)| !d.is_empty())
            .collect()
    };
    let (total, avail) = (by_disk("disk-total"), by_disk("disk-avail"));
    if total.is_empty() {
        return Err(UcmError::Protocol(
            "getStorageUsage answered without disk-total".into(),
        ));
    }
    let mut size = Gauge::new(
        "ucm_storage_size_bytes",
        "Size of the UCM's storage partition (getStorageUsage; the unit on the wire is taken as KiB).",
        &["partition"],
    );
    let mut used = Gauge::new(
        "ucm_storage_used_bytes",
        "Used space of the UCM's storage partition (getStorageUsage).",
        &["partition"],
    );
    for (disk, t) in &total {
        size.set(&[disk], *t);
        if let Some(a) = avail.get(disk) {
            used.set(&[disk], (t - a).max(0.0));
        }
    }
    let mut f = Families::default();
    f.add(size);
    f.add(used);
    Ok(f)
}
