//! Properties of CDR decoding, classification and de-duplication that must hold for any entry a
//! UCM may send, not only the fixtures: the JSON key order does not matter, a one-leg grouped
//! entry is the same call as the flat record of that leg, `sub_cdr_N` legs are read in numeric
//! order, and the per-page path of a poll (`poll::ingest`) counts each call once however the
//! entries are paged and however often a page is served.
//!
//! The JSON text is built by hand, so that the key order is chosen here rather than by
//! serde_json's map. Cases are kept few enough for the file to run in seconds at opt-level 1.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::NaiveDateTime;
use proptest::prelude::*;
use ucm_exporter::cdr::{classify, parse_cdr_response, CdrResponse, Entry, ExtensionPattern};
use ucm_exporter::metrics::TargetMetrics;
use ucm_exporter::poll::{self, Pending, Plan};
use ucm_exporter::state::{self, Loaded, PollState};

// ---------------------------------------------------------------------------------------------
// JSON built by hand

/// A JSON value whose object keys keep the order they were built in.
#[derive(Clone, Debug)]
enum J {
    Str(String),
    Num(u64),
    Null,
    Obj(Vec<(String, J)>),
}

/// How object keys are ordered when rendered, at every level.
#[derive(Clone, Copy, Debug)]
enum Order {
    AsBuilt,
    Reversed,
    /// A permutation chosen by the seed: keys sorted by a hash of (seed, key).
    Hashed(u64),
}

fn key_hash(seed: u64, key: &str) -> u64 {
    // DefaultHasher::new() is SipHash with fixed keys: the same permutation on every run.
    let mut h = DefaultHasher::new();
    (seed, key).hash(&mut h);
    h.finish()
}

fn render(j: &J, order: Order, out: &mut String) {
    match j {
        J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        J::Num(n) => out.push_str(&n.to_string()),
        J::Null => out.push_str("null"),
        J::Obj(kv) => {
            let mut idx: Vec<usize> = (0..kv.len()).collect();
            match order {
                Order::AsBuilt => {}
                Order::Reversed => idx.reverse(),
                Order::Hashed(seed) => idx.sort_by_key(|&i| key_hash(seed, &kv[i].0)),
            }
            out.push('{');
            for (n, i) in idx.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                render(&J::Str(kv[i].0.clone()), order, out);
                out.push(':');
                render(&kv[i].1, order, out);
            }
            out.push('}');
        }
    }
}

fn to_text(j: &J, order: Order) -> String {
    let mut s = String::new();
    render(j, order, &mut s);
    s
}

/// A `cdrapi` page of these entries, rendered in `order`.
fn page(entries: &[J], order: Order) -> String {
    let items: Vec<String> = entries.iter().map(|e| to_text(e, order)).collect();
    format!("{{\"cdr_root\":[{}]}}", items.join(","))
}

fn decode(body: &str) -> Vec<Entry<'_>> {
    match parse_cdr_response(body.as_bytes()) {
        Ok(CdrResponse::Records(entries)) => entries,
        other => panic!("not a page of records: {other:?}\n{body}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Plausible CDR values

const BASE: &str = "2024-03-31 01:59:00";

fn base() -> NaiveDateTime {
    NaiveDateTime::parse_from_str(BASE, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn timestamp(offset: u32) -> String {
    (base() + chrono::Duration::seconds(i64::from(offset)))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    proptest::sample::select(values).prop_map(str::to_string)
}

fn disposition() -> impl Strategy<Value = String> + Clone {
    one_of(&[
        "ANSWERED",
        "NO ANSWER",
        "BUSY",
        "FAILED",
        "answered",
        " ANSWERED ",
        "CONGESTION",
        "",
    ])
}

fn lastapp() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        6 => one_of(&["Dial", "Queue", "VoiceMail", "BackGround", "Playback", "ParkedCall", ""]),
        1 => one_of(&["ForkCDR", "forkcdr "]),
    ]
}

fn action_type() -> impl Strategy<Value = String> + Clone {
    one_of(&[
        "DIAL",
        "QUEUE[6500]",
        "RINGGROUP[6400]",
        "IVR[7000]",
        "queue[ 6501 ]",
        "VM",
        "TRANSFER",
        "",
    ])
}

fn extension() -> impl Strategy<Value = String> + Clone {
    one_of(&[
        "2000", "2001", "2002", "6500", "6400", "trunk_1", "*97", "1", "",
    ])
}

fn channel() -> impl Strategy<Value = String> + Clone {
    one_of(&[
        "PJSIP/2000-00000001",
        "PJSIP/2001-00000002",
        "PJSIP/trunk_1-0000002a",
        "Local/6500@queue-0001;2",
        "",
    ])
}

fn trunk() -> impl Strategy<Value = String> + Clone {
    one_of(&["", "", "T1", "Provider A", " T2 "])
}

fn userfield() -> impl Strategy<Value = String> + Clone {
    one_of(&["", "Inbound", "Outbound", "Internal", "External", "EXT"])
}

/// Seconds as the UCM writes them: a string mostly, a number on some firmware.
fn seconds() -> impl Strategy<Value = J> + Clone {
    (0u64..400, any::<bool>()).prop_map(|(n, text)| {
        if text {
            J::Str(n.to_string())
        } else {
            J::Num(n)
        }
    })
}

/// A leg's start: seconds after [`BASE`] (across the 2024 DST change of Europe/Berlin, the time
/// zone of the ingest tests), rarely one that does not parse.
fn start() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        20 => (0u32..180).prop_map(timestamp),
        1 => one_of(&["", "yesterday", "2024-02-30 10:00:00"]),
    ]
}

/// The fields of one CDR row other than its ids, in the UCM's order, with some that the
/// decoder skips.
#[derive(Clone, Debug)]
struct LegBody {
    fields: Vec<(String, J)>,
    start: String,
    fork: bool,
    /// Channel, start and duration: what tells a ForkCDR copy (docs/design.md §6).
    span: (String, String, u64),
}

fn leg_body() -> impl Strategy<Value = LegBody> {
    (
        (
            channel(),
            channel(),
            lastapp(),
            start(),
            seconds(),
            seconds(),
            disposition(),
        ),
        (
            userfield(),
            extension(),
            extension(),
            action_type(),
            trunk(),
            trunk(),
            one_of(&["2000", "6500", "6400", "0733333333", ""]),
        ),
    )
        .prop_map(
            |(
                (channel, dstchannel, lastapp, start, duration, billsec, disposition),
                (userfield, channel_ext, dstchannel_ext, action_type, src_trunk, dst_trunk, dst),
            )| {
                let s = |v: &str| J::Str(v.to_string());
                let fork = lastapp.trim_ascii().eq_ignore_ascii_case("ForkCDR");
                let seconds = match &duration {
                    J::Num(n) => *n,
                    J::Str(n) => n.parse().unwrap_or(0),
                    _ => 0,
                };
                let span = (channel.clone(), start.trim().to_string(), seconds);
                LegBody {
                    fields: vec![
                        ("accountcode".into(), s("")),
                        ("src".into(), s("2001")),
                        ("dst".into(), s(&dst)),
                        ("dcontext".into(), s("from-internal")),
                        ("clid".into(), s("\"Front desk\" <2001>")),
                        ("channel".into(), s(&channel)),
                        ("dstchannel".into(), s(&dstchannel)),
                        ("lastapp".into(), s(&lastapp)),
                        ("lastdata".into(), s("PJSIP/2000,60,zb(callee-handler^s^1)")),
                        ("start".into(), s(&start)),
                        ("answer".into(), s("")),
                        ("end".into(), J::Null),
                        ("duration".into(), duration),
                        ("billsec".into(), billsec),
                        ("disposition".into(), s(&disposition)),
                        ("amaflags".into(), s("DOCUMENTATION")),
                        ("userfield".into(), s(&userfield)),
                        ("channel_ext".into(), s(&channel_ext)),
                        ("dstchannel_ext".into(), s(&dstchannel_ext)),
                        ("service".into(), s("s")),
                        ("recordfiles".into(), s("")),
                        ("action_owner".into(), s("")),
                        ("action_type".into(), s(&action_type)),
                        ("src_trunk_name".into(), s(&src_trunk)),
                        ("dst_trunk_name".into(), s(&dst_trunk)),
                    ],
                    start,
                    fork,
                    span,
                }
            },
        )
}

/// The ids of leg `n` of call `id`, and its body, as one object's fields.
fn leg_fields(id: u32, n: u32, body: &LegBody) -> Vec<(String, J)> {
    let mut f = vec![
        ("AcctId".to_string(), J::Str(format!("{}", 100 * id + n))),
        (
            "uniqueid".to_string(),
            J::Str(format!("1711846740.{}", 100 * id + n)),
        ),
        (
            "session".to_string(),
            J::Str(format!("1711846740{id:06}-2001")),
        ),
    ];
    f.extend(body.fields.iter().cloned());
    f
}

/// The top-level `cdr` id: empty on some firmware (UCM6302 1.0.17.11), when the call key falls
/// back to the sessions.
fn cdr_id(id: u32, empty: bool) -> J {
    J::Str(if empty {
        String::new()
    } else {
        format!("1711846740{id:06}-2001")
    })
}

/// A flat (single-leg) entry.
fn flat_entry(id: u32, body: &LegBody, cdr_empty: bool) -> J {
    let mut f = vec![("cdr".to_string(), cdr_id(id, cdr_empty))];
    f.extend(leg_fields(id, 1, body));
    J::Obj(f)
}

/// A grouped entry: `main_cdr` (with the first leg's session and start when `main_same`) and
/// `sub_cdr_N` for each (N, leg).
fn grouped_entry(id: u32, legs: &[(u32, LegBody)], main_same: bool, cdr_empty: bool) -> J {
    let first_start = legs
        .first()
        .map_or(BASE.to_string(), |(_, l)| l.start.clone());
    let (session, main_start) = if main_same {
        (format!("1711846740{id:06}-2001"), first_start)
    } else {
        (format!("main-{id}"), timestamp(7))
    };
    let main = J::Obj(vec![
        ("AcctId".into(), J::Str(format!("{id}"))),
        ("session".into(), J::Str(session)),
        ("start".into(), J::Str(main_start)),
        ("duration".into(), J::Str("42".into())),
        ("billsec".into(), J::Str("17".into())),
        ("disposition".into(), J::Str("ANSWERED".into())),
        ("userfield".into(), J::Str("Internal".into())),
    ]);
    let mut f = vec![
        ("cdr".to_string(), cdr_id(id, cdr_empty)),
        ("main_cdr".to_string(), main),
    ];
    for (n, body) in legs {
        f.push((format!("sub_cdr_{n}"), J::Obj(leg_fields(id, *n, body))));
    }
    J::Obj(f)
}

/// Any entry: flat, or grouped with 1 to 12 legs numbered 1..=N.
fn entry(id: u32) -> impl Strategy<Value = J> {
    let cdr_empty = prop::bool::weighted(0.2);
    prop_oneof![
        (leg_body(), cdr_empty).prop_map(move |(b, empty)| flat_entry(id, &b, empty)),
        (
            prop::collection::vec(leg_body(), 1..=12),
            any::<bool>(),
            cdr_empty
        )
            .prop_map(move |(legs, main_same, empty)| {
                let legs: Vec<(u32, LegBody)> = (1..).zip(legs).collect();
                grouped_entry(id, &legs, main_same, empty)
            }),
    ]
}

/// What classification reads of each leg, and its key: everything of a `Leg` but the position
/// it had in its entry (`sub_cdr_N`'s N, private), which a flat record does not have.
fn leg_views<'a>(e: &'a Entry<'a>) -> Vec<(u64, [&'a str; 14], [u64; 2])> {
    e.legs()
        .iter()
        .map(|l| {
            (
                l.key(),
                [
                    &l.acct_id,
                    &l.channel,
                    &l.dstchannel,
                    &l.lastapp,
                    &l.start,
                    &l.disposition,
                    &l.uniqueid,
                    &l.userfield,
                    &l.channel_ext,
                    &l.dstchannel_ext,
                    &l.session,
                    &l.action_type,
                    &l.src_trunk_name,
                    &l.dst_trunk_name,
                ]
                .map(|s| &**s),
                [l.duration, l.billsec],
            )
        })
        .collect()
}

fn patterns() -> [ExtensionPattern; 2] {
    [
        ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap(),
        ExtensionPattern::new("^(2|6)[0-9]{3}$").unwrap(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Key order

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same entry with its keys (and its legs' keys) in any order decodes to the same
    /// entry and classifies as the same call.
    #[test]
    fn classification_ignores_key_order(
        e in (0u32..1000).prop_flat_map(entry),
        seed in any::<u64>(),
    ) {
        let a = page(std::slice::from_ref(&e), Order::AsBuilt);
        let b = page(std::slice::from_ref(&e), Order::Hashed(seed));
        let c = page(std::slice::from_ref(&e), Order::Reversed);
        let (ea, eb, ec) = (decode(&a), decode(&b), decode(&c));
        prop_assert_eq!(&ea, &eb);
        prop_assert_eq!(&ea, &ec);
        prop_assert_eq!(ea[0].call_key(), eb[0].call_key());
        for ext in &patterns() {
            let ca = classify(&ea[0], ext);
            prop_assert_eq!(&ca, &classify(&eb[0], ext), "{}\n{}", a, b);
            prop_assert_eq!(&ca, &classify(&ec[0], ext), "{}\n{}", a, c);
        }
    }

    /// One leg as a grouped entry (`main_cdr` + `sub_cdr_1`) and as a flat record is the same
    /// call: same legs, keys, direction, trunk, disposition, times and extensions. Only
    /// `grouped` differs, and the call key when `main_cdr` carries ids of its own (the key
    /// prefers the summary's session and start).
    #[test]
    fn one_leg_grouped_is_the_flat_record(
        id in 0u32..1000,
        body in leg_body(),
        main_same in any::<bool>(),
        cdr_empty in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let flat = page(&[flat_entry(id, &body, cdr_empty)], Order::Hashed(seed));
        let one = [(1, body.clone())];
        let grouped = page(&[grouped_entry(id, &one, main_same, cdr_empty)], Order::Hashed(seed));
        let (ef, eg) = (decode(&flat), decode(&grouped));
        let (lf, lg) = (leg_views(&ef[0]), leg_views(&eg[0]));
        prop_assert_eq!(lf, lg);
        // A ForkCDR leg alone copies nothing: it is the call.
        prop_assert_eq!(ef[0].legs().len(), 1);
        if main_same {
            prop_assert_eq!(ef[0].call_key(), eg[0].call_key());
        }
        for ext in &patterns() {
            let (cf, cg) = (classify(&ef[0], ext), classify(&eg[0], ext));
            prop_assert_eq!(cf.is_some(), cg.is_some());
            let (Some(cf), Some(mut cg)) = (cf, cg) else { continue };
            prop_assert!(!cf.grouped && cg.grouped);
            cg.grouped = false;
            if !main_same {
                cg.key = cf.key;
            }
            prop_assert_eq!(&cf, &cg, "{}\n{}", flat, grouped);
        }
    }

    /// `sub_cdr_N` legs are read by numeric N (`sub_cdr_10` after `sub_cdr_9`, gaps allowed)
    /// whatever order the keys come in.
    #[test]
    fn sub_cdr_legs_in_numeric_order(
        id in 0u32..1000,
        numbers in prop::collection::btree_set(1u32..=40, 1..=12),
        bodies in prop::collection::vec(leg_body(), 12),
        main_same in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let legs: Vec<(u32, LegBody)> = numbers.iter().copied().zip(bodies).collect();
        let e = grouped_entry(id, &legs, main_same, false);
        let in_order = page(std::slice::from_ref(&e), Order::AsBuilt);
        let shuffled = page(std::slice::from_ref(&e), Order::Hashed(seed));
        let (eo, es) = (decode(&in_order), decode(&shuffled));
        // A ForkCDR leg goes when a leg that is not ForkCDR has its channel and start, or an
        // earlier ForkCDR leg its channel, start and duration.
        let copy = |i: usize| {
            let b = &legs[i].1;
            let at = |x: &LegBody| (x.span.0.clone(), x.span.1.clone());
            b.fork
                && legs.iter().enumerate().any(|(j, (_, o))| {
                    j != i && at(o) == at(b) && (!o.fork || (j < i && o.span.2 == b.span.2))
                })
        };
        let want: Vec<String> = (0..legs.len())
            .filter(|&i| !copy(i))
            .map(|i| format!("{}", 100 * id + legs[i].0))
            .collect();
        let got: Vec<&str> = es[0].legs().iter().map(|l| &*l.acct_id).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(&eo, &es);
        for ext in &patterns() {
            prop_assert_eq!(classify(&eo[0], ext), classify(&es[0], ext), "{}", shuffled);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// De-duplication and paging

/// One read of a poll: pages into a pending result, sharing the read's call-key set.
struct Read {
    pending: Pending,
    read: foldhash::HashSet<u64>,
}

impl Read {
    fn new() -> Self {
        Read {
            pending: Pending::default(),
            read: Default::default(),
        }
    }

    fn ingest(&mut self, pages: &[String], state: Option<&PollState>) {
        let ext = &patterns()[0];
        for body in pages {
            poll::ingest(
                body.as_bytes(),
                state,
                &mut self.pending,
                &mut self.read,
                ext,
                ucm_exporter::clock::Zone::Named(chrono_tz::Europe::Berlin),
                &Plan::WHOLE,
            )
            .expect("a page of records");
        }
    }

    /// What the tally would publish: the call series of a target as `/probe` shows them.
    fn exposition(&self) -> String {
        let m = TargetMetrics::new(5000);
        m.apply(self.pending.tally());
        String::from_utf8(m.text()).unwrap()
    }
}

/// Splits `entries` into pages of the given sizes (cycled).
fn paged(entries: &[J], sizes: &[usize], order: Order) -> Vec<String> {
    let mut pages = Vec::new();
    let mut rest = entries;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        pages.push(page(now, order));
        rest = later;
    }
    pages
}

/// A read's worth of entries: ids from a small range, so the same call comes back (with the
/// same or other legs), and some entries served twice verbatim, as overlapping windows do.
fn entries() -> impl Strategy<Value = Vec<J>> {
    (
        prop::collection::vec((0u32..12).prop_flat_map(entry), 1..=20),
        prop::collection::vec(any::<prop::sample::Index>(), 0..=6),
    )
        .prop_map(|(mut entries, repeats)| {
            for r in repeats {
                let again = entries[r.index(entries.len())].clone();
                entries.push(again);
            }
            entries
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The same entries, paged any way, give the same tally; serving every page again adds
    /// nothing, not even skip counts; and once the read's keys are in the poll state, nothing
    /// counts at all.
    #[test]
    fn ingest_is_idempotent_and_paging_independent(
        entries in entries(),
        sizes in prop::collection::vec(1usize..=7, 1..=5),
        seed in any::<u64>(),
    ) {
        let mut whole = Read::new();
        whole.ingest(&paged(&entries, &[usize::MAX], Order::AsBuilt), None);
        let expected = whole.exposition();

        let pages = paged(&entries, &sizes, Order::Hashed(seed));
        let mut read = Read::new();
        read.ingest(&pages, None);
        prop_assert_eq!(&read.exposition(), &expected);
        let tally = read.pending.tally();
        let (calls, records, skipped) = (tally.call_count(), tally.records, tally.skipped);
        prop_assert_eq!(calls, whole.pending.tally().call_count());
        prop_assert_eq!(records, whole.pending.tally().records);

        // The same pages again, as a UCM that serves a page twice or an overlapping window.
        read.ingest(&pages, None);
        let tally = read.pending.tally();
        prop_assert_eq!(tally.call_count(), calls);
        prop_assert_eq!(tally.records, records);
        prop_assert_eq!(tally.skipped, skipped);
        prop_assert_eq!(&read.exposition(), &expected);

        // What a commit of this read writes to the state: every classified call's key and
        // its legs' keys. A later read of the same entries counts none of them.
        let ext = &patterns()[0];
        let mut state = PollState::new("https://ucm", i64::MIN);
        for body in &pages {
            for e in decode(body) {
                if let Some(call) = classify(&e, ext) {
                    let start = ucm_exporter::clock::local_secs(call.start);
                    state.calls.insert(call.key, start);
                    state.legs.extend(call.leg_keys.iter().map(|k| (*k, start)));
                }
            }
        }
        let mut later = Read::new();
        later.ingest(&pages, Some(&state));
        prop_assert_eq!(later.pending.tally().call_count(), 0);
        prop_assert_eq!(later.pending.tally().records, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// The state file seed of the fuzz target

/// `fuzz/corpus/state_file/full.json` is a state file `state::load` accepts, so the fuzz
/// target starts from the real format (and is told when the format moves on).
#[test]
fn fuzz_state_seed_is_a_valid_state_file() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/state_file/full.json");
    match state::load(&path) {
        Loaded::Found(s) => {
            assert_eq!(s.watermark, Some(1_700_003_600));
            assert_eq!(s.calls.len(), 2);
            let trunks: BTreeSet<&str> = s.trunks.iter().map(String::as_str).collect();
            assert!(trunks.contains("Provider A"));
        }
        other => panic!("{}: {other:?}", path.display()),
    }
}
