//! The non-CDR actions an exporter reads: system status, storage, the list actions, trunk and
//! queue status, with the UCM's mixed typing (list paging fields, counters of trunks and
//! voicemail and trunk indexes are numbers, the rest strings). Live status is read from the
//! same channels and bridges as the channel lists, so the actions agree with each other at any
//! instant.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::clock::{fmt_secs, LocalSecs, Reading};
use super::device::{trunk_type, Device, Partition, TrunkClass};
use super::live::{Bridge, Channel, Endpoint};
use super::quirks::{AccountCasing, SystemTimeFormat, UptimeFormat};
use super::store::Store;
use super::traffic::{
    HUNT_GROUP, HUNT_GROUP_NAME, HUNT_MEMBERS, IVR, IVR_NAME, QUEUE, QUEUE_NAME, RING_GROUP,
    RING_GROUP_NAME, TRUNKS,
};
use super::{Firmware, Sim};

fn page_of(req: &Map<String, Value>, key: &str, rows: Vec<Value>) -> Value {
    let num = |k: &str, d: u64| match req.get(k) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(d),
        Some(Value::String(s)) => s.parse().unwrap_or(d),
        _ => d,
    };
    let item_num = num("item_num", 30).max(1);
    let total = rows.len() as u64;
    let total_page = total.div_ceil(item_num).max(1);
    let page = num("page", 1).max(1);
    let shown: Vec<Value> = rows
        .into_iter()
        .skip(((page - 1) * item_num) as usize)
        .take(item_num as usize)
        .collect();
    let mut response = Map::new();
    response.insert(key.into(), Value::Array(shown));
    response.insert("total_item".into(), total.into());
    response.insert("total_page".into(), total_page.into());
    response.insert("page".into(), page.into());
    json!({"response": response, "status": 0})
}

fn active_bridges(store: &Store, now: LocalSecs) -> impl Iterator<Item = &Bridge> {
    store.entries()[store.live_range(now)]
        .iter()
        .flat_map(|e| &e.bridges)
        .filter(move |b| b.from <= now && now < b.to)
}

fn active_channels(store: &Store, now: LocalSecs) -> impl Iterator<Item = &Channel> {
    store.entries()[store.live_range(now)]
        .iter()
        .flat_map(|e| &e.channels)
        .filter(move |c| c.from <= now && now < c.to)
}

/// Pairs of channels talking at the sim's clock, oldest call first.
pub fn list_bridged(sim: &Sim, req: &Map<String, Value>) -> Value {
    let now = sim.generated_now().clock;
    let uniqueids = !sim.quirks().no_channel_uniqueids;
    let rows = active_bridges(&sim.store.read().expect("store lock"), now)
        .map(|b| b.row(uniqueids))
        .collect();
    page_of(req, "channel", rows)
}

/// Channels of calls under way that no bridge holds: callers waiting, ringing or held by an
/// application, and the phones they ring.
pub fn list_unbridged(sim: &Sim, req: &Map<String, Value>) -> Value {
    let now = sim.generated_now().clock;
    let uniqueids = !sim.quirks().no_channel_uniqueids;
    let rows = active_channels(&sim.store.read().expect("store lock"), now)
        .map(|c| c.row(uniqueids))
        .collect();
    page_of(req, "channel", rows)
}

/// What the calls under way hold at one instant: the phones talking, the phones being rung and
/// the trunks with a channel open.
#[derive(Debug, Default)]
struct Busy {
    talking: BTreeSet<u32>,
    ringing: BTreeSet<u32>,
    trunks: BTreeSet<u32>,
}

fn busy_at(store: &Store, now: LocalSecs) -> Busy {
    let mut busy = Busy::default();
    let mut note = |end: Endpoint, talking: bool| match end {
        Endpoint::Phone(e) if talking => {
            busy.talking.insert(e);
        }
        Endpoint::Phone(e) => {
            busy.ringing.insert(e);
        }
        Endpoint::Trunk(i) => {
            busy.trunks.insert(i);
        }
        Endpoint::Other => {}
    };
    for b in active_bridges(store, now) {
        b.ends.iter().for_each(|&e| note(e, true));
    }
    for c in active_channels(store, now) {
        // Only a phone being rung rings; a phone's own channel outside a bridge (dialling out,
        // on hold in an application) is neither talking nor ringing.
        match c.end {
            Endpoint::Phone(_) if c.state == "Ringing" => note(c.end, false),
            Endpoint::Trunk(_) => note(c.end, false),
            _ => {}
        }
    }
    busy
}

/// An extension's status as `listAccount` words it. Unregistered wins: a phone that is not
/// registered shows `Unavailable` even when the traffic model has it in a call.
fn account_status(registered: bool, ext: u32, busy: &Busy, casing: AccountCasing) -> &'static str {
    let (talking, ringing) = (busy.talking.contains(&ext), busy.ringing.contains(&ext));
    match (casing, registered, talking, ringing) {
        (AccountCasing::Lower, false, ..) => "unavailable",
        (_, false, ..) => "Unavailable",
        (AccountCasing::Compound, true, true, true) => "InUse&Ringing",
        (AccountCasing::Lower, true, true, _) => "inuse",
        (_, true, true, _) => "InUse",
        (AccountCasing::Lower, true, false, true) => "ringing",
        (_, true, false, true) => "Ringing",
        (AccountCasing::Lower, true, false, false) => "idle",
        (_, true, false, false) => "Idle",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The device state and what the calls under way hold, read at the sim's clock.
fn snapshot(sim: &Sim) -> (Reading, Device, Busy) {
    let now = sim.generated_now();
    let device = sim.device().clone();
    let busy = busy_at(&sim.store.read().expect("store lock"), now.clock);
    (now, device, busy)
}

pub fn list_account(sim: &Sim, req: &Map<String, Value>) -> Value {
    let casing = sim.quirks().account_status_casing;
    let (_, device, busy) = snapshot(sim);
    let rows = device
        .extensions
        .iter()
        .map(|(&e, state)| {
            let status = account_status(state.registered, e, &busy, casing);
            let addr = if state.registered { format!("192.168.1.{}:5060 (GXP2170)", e - 1900) } else { "-".to_string() };
            json!({"extension": e.to_string(), "account_type": "SIP", "fullname": format!("User {e}"),
                   "out_of_service": yes_no(state.out_of_service), "status": status, "addr": addr, "urgemsg": 0,
                   "newmsg": e % 3, "oldmsg": e % 5, "lockflag": 0, "presence_status": "available",
                   "user_name": e.to_string(), "email_to_user": "no", "enable_contact": 1})
        })
        .collect();
    page_of(req, "account", rows)
}

fn trunk_host(index: u32) -> String {
    format!("sip{index}.example.net")
}

fn trunk_username(index: u32) -> String {
    format!("4930{index}000")
}

pub fn list_voip_trunk(sim: &Sim, req: &Map<String, Value>) -> Value {
    let device = sim.device().clone();
    let rows = TRUNKS
        .iter()
        .zip(&device.trunks)
        .map(|((i, name), state)| {
            json!({"trunk_index": i, "trunk_name": name, "host": trunk_host(*i),
                   "trunk_type": trunk_type(*i), "username": trunk_username(*i),
                   "technology": "SIP", "ldap_sync_enable": "no",
                   "out_of_service": yes_no(state.out_of_service)})
        })
        .collect();
    page_of(req, "voip_trunk", rows)
}

/// Every trunk with its live status, and totals over all trunks whatever page is shown.
pub fn list_all_trunk(sim: &Sim, req: &Map<String, Value>) -> Value {
    let (_, device, busy) = snapshot(sim);
    let mut counts = [0u64; 4];
    let rows = TRUNKS
        .iter()
        .enumerate()
        .map(|(n, (i, name))| {
            let class = device.trunk_class(n, busy.trunks.contains(i));
            counts[class as usize] += 1;
            json!({"trunk_index": i, "trunk_name": name, "type": trunk_type(*i),
                   "status": device.trunk_status(n),
                   "out_of_service": yes_no(device.trunks[n].out_of_service),
                   "username": trunk_username(*i), "host": trunk_host(*i)})
        })
        .collect();
    let mut page = page_of(req, "trunks", rows);
    for (class, key) in [
        (TrunkClass::Available, "available_trunk_number"),
        (TrunkClass::Busy, "busy_trunk_number"),
        (TrunkClass::Unavailable, "unavailable_trunk_number"),
        (TrunkClass::Unmonitored, "unmonitored_trunk_number"),
    ] {
        page["response"][key] = counts[class as usize].into();
    }
    page
}

/// A string or a number, as clients send either for numeric parameters.
fn param(req: &Map<String, Value>, key: &str) -> Option<String> {
    match req.get(key)? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One trunk by `trunk` (its index); None for an index the UCM has no trunk for.
pub fn get_sip_trunk(sim: &Sim, req: &Map<String, Value>) -> Option<Value> {
    let index: u32 = param(req, "trunk")?.parse().ok()?;
    let n = TRUNKS.iter().position(|(i, _)| *i == index)?;
    let name = TRUNKS[n].1;
    let with_status = sim.quirks().sip_trunk_status;
    let device = sim.device().clone();
    let mut trunk = json!({"trunk_index": index, "trunk_name": name, "host": trunk_host(index),
        "username": trunk_username(index), "authid": trunk_username(index),
        "trunk_type": trunk_type(index), "technology": "SIP", "transport": "udp",
        "keepalive": "yes", "out_of_service": yes_no(device.trunks[n].out_of_service)});
    if with_status {
        trunk["status"] = json!(device.trunk_status(n));
    }
    Some(json!({"response": {"trunk": trunk}, "status": 0}))
}

pub fn system_status(sim: &Sim) -> Value {
    let quirks = sim.quirks();
    let now = sim.clock.now();
    // Time that passed since boot, not clock readings: a clock step does not reboot the UCM.
    let up = (sim.clock.steady_secs() - sim.device().booted_at).max(0);
    let (days, rest) = (up / 86_400, up % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    let up_time = match quirks.uptime_format {
        UptimeFormat::Hms if days > 0 => format!("{days} {hms}"),
        UptimeFormat::Hms => hms,
        UptimeFormat::Seconds => up.to_string(),
        UptimeFormat::HoursOver24 => {
            format!("{:02}:{:02}:{:02}", up / 3600, up % 3600 / 60, up % 60)
        }
        UptimeFormat::DaysWord => format!("{days} day(s) {hms}"),
    };
    let offset = sim.utc_offset();
    let date = match quirks.system_time_format {
        SystemTimeFormat::DayFirst => "%d-%m-%Y %H:%M:%S",
        SystemTimeFormat::YearFirst => "%Y-%m-%d %H:%M:%S",
    };
    // Each seed is a UCM of its own: no two share a serial number or a MAC.
    let id = sim.cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let [_, _, _, _, _, a, b, c] = id.to_be_bytes();
    json!({"response": {
        "part-number": "9660003912B", "serial-number": format!("23HQXPEKB1{id:06X}"),
        "up-time": up_time, "idle-time": "00:00:00",
        "system-time": format!("{} UTC{}", now.format(date), offset),
        "mac": format!("C0:74:AD:{a:02X}:{b:02X}:{c:02X}")}, "status": 0})
}

/// Sizes in KiB as decimal strings: the unit a real UCM uses here is not known, KiB is what
/// `df` reports and the most likely reading.
pub fn storage_usage(sim: &Sim) -> Value {
    let device = sim.device().clone();
    let list = |f: &dyn Fn(&Partition) -> String| -> Vec<Value> {
        device
            .storage
            .iter()
            .map(|p| json!({"diskname": p.name, "value": f(p)}))
            .collect()
    };
    json!({"response": {"body": {
        "disk-total": list(&|p| p.total_kib.to_string()),
        "disk-avail": list(&|p| p.avail_kib().to_string()),
        "disk-usage": list(&|p| format!("{}%", p.usage_percent())),
    }}, "status": 0})
}

fn joined(members: impl IntoIterator<Item = u32>) -> String {
    let members: Vec<String> = members.into_iter().map(|m| m.to_string()).collect();
    members.join(",")
}

/// `listQueue`: the configured queues, paged like the other lists, for the group names.
pub fn list_queue(req: &Map<String, Value>) -> Value {
    let rows = vec![
        json!({"extension": QUEUE.0, "queue_name": QUEUE_NAME, "strategy": "ringall",
        "members": joined(QUEUE.1), "enable_agent_login": "no"}),
    ];
    page_of(req, "queue", rows)
}

/// `listRingGroup`: the ring-all group 6400 and the sequential hunt group 6401.
pub fn list_ring_group(req: &Map<String, Value>) -> Value {
    let rows = vec![
        json!({"extension": RING_GROUP.0, "ringgroup_name": RING_GROUP_NAME, "strategy": "ringall",
               "members": joined(RING_GROUP.1)}),
        json!({"extension": HUNT_GROUP, "ringgroup_name": HUNT_GROUP_NAME, "strategy": "linear",
               "members": joined(HUNT_MEMBERS)}),
    ];
    page_of(req, "ringgroup", rows)
}

/// `listIVR`: the one IVR.
pub fn list_ivr(req: &Map<String, Value>) -> Value {
    let rows = vec![json!({"extension": IVR, "ivr_name": IVR_NAME, "dial_extension": "yes"})];
    page_of(req, "ivr", rows)
}

pub fn call_queues() -> Value {
    json!({"response": {"CallQueuesMessage": [{"extension": QUEUE.0, "queuename": QUEUE_NAME,
        "enable_agent_login": "no"}]}, "status": 0})
}

/// The queue a request names by `extension`; None when it names none the UCM has.
fn queue_of(req: &Map<String, Value>) -> Option<&'static str> {
    (param(req, "extension")? == QUEUE.0).then_some(QUEUE.0)
}

/// Callers waiting in a queue (no `role`, or `""`), oldest first, or the callers members are
/// talking to (`role: "answer"`); None for another role or an unknown queue.
pub fn queue_calling(sim: &Sim, req: &Map<String, Value>) -> Option<Value> {
    let queue = queue_of(req)?;
    let answered = match param(req, "role").as_deref() {
        None | Some("") => false,
        Some("answer") => true,
        Some(_) => return None,
    };
    let as_array = sim.quirks().queue_calling_array;
    let now = sim.generated_now().clock;
    let store = sim.store.read().expect("store lock");
    let calls = store.entries()[store.live_range(now)]
        .iter()
        .filter_map(|e| e.queue.as_ref())
        .filter(|q| q.queue == queue);
    let rows: Vec<Value> = if answered {
        calls
            .flat_map(|q| &q.talks)
            .filter(|t| t.from <= now && now < t.to)
            .map(|t| {
                json!({"callerchannel": t.callerchannel, "calleechannel": t.calleechannel,
                       "bridge_time": fmt_secs(t.from), "channel1": t.callerchannel})
            })
            .collect()
    } else {
        let mut waiting: Vec<_> = calls.filter(|q| q.waiting(now)).collect();
        waiting.sort_by_key(|q| q.entered);
        waiting
            .iter()
            .enumerate()
            .map(|(n, q)| {
                json!({"position": (n + 1).to_string(), "callerid": q.callerid,
                       "callerchannel": q.callerchannel, "starttime": fmt_secs(q.entered)})
            })
            .collect()
    };
    let list = if as_array {
        Value::Array(rows)
    } else {
        json!({ "member": rows })
    };
    Some(json!({"response": {"CallQueues": list}, "status": 0}))
}

/// The members of a queue with their status (as `listAccount` words it) and what they did with
/// the queue's calls that ended since the last boot: calls answered, calls that rang them and
/// that nobody answered, talk seconds.
pub fn queue_members(sim: &Sim, req: &Map<String, Value>) -> Option<Value> {
    let queue = queue_of(req)?;
    let casing = sim.quirks().account_status_casing;
    let (now, device, busy) = snapshot(sim);
    let store = sim.store.read().expect("store lock");
    let outcomes: Vec<_> = store
        .queue_outcomes(device.booted_at, now.steady)
        .iter()
        .filter(|o| o.queue == queue)
        .collect();
    let rows: Vec<Value> = QUEUE
        .1
        .iter()
        .map(|&m| {
            let registered = device.extensions.get(&m).is_some_and(|e| e.registered);
            let mine = outcomes.iter().filter(|o| o.answered_by == Some(m));
            let answer = mine.clone().count();
            let talktime: i64 = mine.map(|o| o.talk_secs).sum();
            let abandon = outcomes
                .iter()
                .filter(|o| o.answered_by.is_none() && o.rung.contains(&m))
                .count();
            json!({"member_extension": m.to_string(),
                   "status": account_status(registered, m, &busy, casing),
                   "answer": answer.to_string(), "abandon": abandon.to_string(),
                   "talktime": talktime.to_string(), "membership": "static"})
        })
        .collect();
    Some(json!({"response": {"CallQueueMembersMessage": {"member": rows}}, "status": 0}))
}

pub fn general_status(firmware: Firmware) -> Value {
    let (model, version) = match firmware {
        Firmware::Ucm62xx => ("UCM6204  V1.4A", "1.0.20.38"),
        Firmware::Ucm63xx | Firmware::Mixed => ("UCM6302  V1.2B", "1.0.17.11"),
    };
    json!({"response": {"product-model": model, "base-version": version, "prog-version": version,
        "boot-version": version, "core-version": version, "rcvr-version": version,
        "lang-version": version, "gswave-version": "1.0.17.8"}, "status": 0})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_status_in_each_casing() {
        let busy = Busy {
            talking: BTreeSet::from([2001, 2002]),
            ringing: BTreeSet::from([2002, 2003]),
            trunks: BTreeSet::new(),
        };
        let all = |casing| {
            [
                (true, 2000),
                (true, 2001),
                (true, 2002),
                (true, 2003),
                (false, 2002),
            ]
            .map(|(registered, e)| account_status(registered, e, &busy, casing))
        };
        assert_eq!(
            all(AccountCasing::Mixed),
            ["Idle", "InUse", "InUse", "Ringing", "Unavailable"]
        );
        assert_eq!(
            all(AccountCasing::Lower),
            ["idle", "inuse", "inuse", "ringing", "unavailable"]
        );
        assert_eq!(
            all(AccountCasing::Compound),
            ["Idle", "InUse", "InUse&Ringing", "Ringing", "Unavailable"]
        );
    }
}
