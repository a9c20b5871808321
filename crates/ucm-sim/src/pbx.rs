//! The non-CDR actions an exporter reads: system status and the list actions, with the UCM's
//! mixed typing (list paging fields and voicemail counters are numbers, the rest strings).

use chrono::{Offset, TimeZone};
use serde_json::{json, Map, Value};

use super::clock::{to_secs, LocalSecs};
use super::live::{Bridge, Channel};
use super::store::Store;
use super::traffic::{EXTENSIONS, TRUNKS};
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

pub fn list_account(sim: &Sim, req: &Map<String, Value>) -> Value {
    let now = sim.generated_now().clock;
    let busy: Vec<String> = active_bridges(&sim.store.read().expect("store lock"), now)
        .flat_map(|b| [b.callerid1.clone(), b.callerid2.clone()])
        .collect();
    let rows = EXTENSIONS
        .map(|e| {
            // A stable few phones are unplugged, like in any office.
            let unplugged = (u64::from(e) ^ sim.cfg.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 < 2;
            let status = if unplugged {
                "Unavailable"
            } else if busy.iter().any(|b| *b == e.to_string()) {
                "InUse"
            } else {
                "Idle"
            };
            let addr = if unplugged { "-".to_string() } else { format!("192.168.1.{}:5060 (GXP2170)", e - 1900) };
            json!({"extension": e.to_string(), "account_type": "SIP", "fullname": format!("User {e}"),
                   "out_of_service": "no", "status": status, "addr": addr, "urgemsg": 0,
                   "newmsg": e % 3, "oldmsg": e % 5, "lockflag": 0, "presence_status": "available",
                   "user_name": e.to_string(), "email_to_user": "no", "enable_contact": 1})
        })
        .collect();
    page_of(req, "account", rows)
}

pub fn list_voip_trunk(req: &Map<String, Value>) -> Value {
    let rows = TRUNKS
        .iter()
        .map(|(i, name)| {
            json!({"trunk_index": i, "trunk_name": name, "host": format!("sip{i}.example.net"),
                   "trunk_type": if *i == 4 { "peer" } else { "register" }, "username": format!("4930{i}000"),
                   "technology": "SIP", "ldap_sync_enable": "no", "out_of_service": "no"})
        })
        .collect();
    page_of(req, "voip_trunk", rows)
}

pub fn system_status(sim: &Sim) -> Value {
    let now = sim.clock.now();
    // Time that passed, not clock readings: a clock step does not reboot the UCM.
    let up = (sim.clock.steady_secs() - to_secs(sim.clock.start())).max(0);
    let (days, rest) = (up / 86_400, up % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    let up_time = if days > 0 {
        format!("{days} {hms}")
    } else {
        hms
    };
    let offset = sim
        .cfg
        .timezone
        .offset_from_local_datetime(&now)
        .earliest()
        .map_or(
            chrono::FixedOffset::east_opt(0).expect("zero offset"),
            |o| o.fix(),
        );
    json!({"response": {
        "part-number": "9660003912B", "serial-number": "23HQXPEKB11B8E86",
        "up-time": up_time, "idle-time": "00:00:00",
        "system-time": format!("{} UTC{}", now.format("%d-%m-%Y %H:%M:%S"), offset),
        "mac": "C0:74:AD:1B:8E:86"}, "status": 0})
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
