//! The UCM simulator tested over real HTTPS on loopback: authentication, sessions, login
//! security, cdrapi paging/filtering/visibility, determinism, ground truth and faults.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use ucm_sim::{
    self as sim, CookieMode, EndColumn, Fault, FaultRule, Order, Quirks, SimConfig, SimHandle,
    Truth,
};

/// The three entries of docs/ucm-api.md §5.2 (verbatim; the grouped one's elided sub_cdr_2 fields
/// filled in from sub_cdr_1, the UCM6302 excerpt left as captured).
const REFERENCE_EXAMPLES: &str = r#"[
{"cdr":"1683833430724538-2001","AcctId":"1","accountcode":"","src":"2001","dst":"2000","dcontext":"from-internal","clid":"\"\" <2001>","channel":"PJSIP/2001-00000000","dstchannel":"PJSIP/2000-00000001","lastapp":"Dial","lastdata":"PJSIP/2000/sip:2000@172.168.1.243:5060,60,zb(callee-handler^s^1)","start":"2023-05-11 16:30:30","answer":"2023-05-11 16:30:35","end":"2023-05-11 16:30:42","duration":"12","billsec":"6","disposition":"ANSWERED","amaflags":"DOCUMENTATION","uniqueid":"1683833430.0","userfield":"Internal","channel_ext":"2001","dstchannel_ext":"2000","service":"s","caller_name":"","recordfiles":"","dstanswer":"2000","chanext":"","dstchanext":"","session":"1683833430724538-2001","action_owner":"2001","action_type":"DIAL","src_trunk_name":"","dst_trunk_name":""},
{"cdr":"1683899266980541-1015","main_cdr":{"AcctId":"","accountcode":"","src":"1015","dst":"2004","dcontext":"","clid":"","channel":"","dstchannel":"","lastapp":"","lastdata":"","start":"2023-05-12 10:47:46","answer":"","end":"","duration":"15","billsec":"15","disposition":"","amaflags":"","uniqueid":"","userfield":"","channel_ext":"","dstchannel_ext":"","service":"","caller_name":"","recordfiles":"","dstanswer":"","chanext":"","dstchanext":"","session":"1683899266980541-1015","action_owner":"","action_type":"DIAL","src_trunk_name":"","dst_trunk_name":""},"sub_cdr_1":{"AcctId":"24","src":"1015","dst":"2004","dcontext":"did-local","clid":"\"1015\" <1015>","channel":"PJSIP/trunk_2-0000002b","dstchannel":"","lastapp":"Dial","lastdata":"PJSIP/2004,60,zb(callee-handler^s^1)","start":"2023-05-12 10:47:46","answer":"2023-05-12 10:47:47","end":"2023-05-12 10:47:47","duration":"0","billsec":"0","disposition":"NO ANSWER","amaflags":"DOCUMENTATION","uniqueid":"1683899266.91","userfield":"Inbound","channel_ext":"trunk_2","dstchannel_ext":"2004","service":"s","caller_name":"1015","recordfiles":"","dstanswer":"","session":"1683899266980541-1015","action_owner":"1015","action_type":"DIAL","src_trunk_name":"groff","dst_trunk_name":"","accountcode":"","chanext":"","dstchanext":""},"sub_cdr_2":{"AcctId":"25","src":"1015","dst":"2004","dcontext":"did-local","clid":"\"1015\" <1015>","channel":"PJSIP/trunk_2-0000002b","dstchannel":"","lastapp":"VoiceMail","lastdata":"2004@default,u","start":"2023-05-12 10:47:47","answer":"2023-05-12 10:47:47","end":"2023-05-12 10:48:02","duration":"15","billsec":"15","disposition":"ANSWERED","amaflags":"DOCUMENTATION","uniqueid":"1683899266.91","userfield":"Inbound","channel_ext":"trunk_2","dstchannel_ext":"2004","service":"s","caller_name":"1015","recordfiles":"","dstanswer":"2004","session":"1683899266980541-1015","action_owner":"1015","action_type":"VM","src_trunk_name":"groff","dst_trunk_name":"","accountcode":"","chanext":"","dstchanext":""}},
{"cdr":"","main_cdr":{"src":"07XXXXXXXXX","dst":"01XXXXXXXXX","start":"2022-08-22 09:33:56","duration":"65","billsec":"65","session":"1661157236570719-07XXXXXXXXX","action_type":"DIAL"},"sub_cdr_1":{"AcctId":"71047","dst":"71","dcontext":"from-internal-xfer","channel":"PJSIP/trunk_2-000004e1","lastapp":"Park","lastdata":"default:71","duration":"35","billsec":"35","disposition":"ANSWERED","userfield":"Inbound","channel_ext":"trunk_2","action_type":"PARKEDCALL","src_trunk_name":"Daisy","nat_call":"no","nat_call_peer":"no","video_call":"no","gdms_unique_code":"","gds_call":"no","gsc_call":"no","wave_src_seqid":"","wave_dst_seqid":"","device_info":"","device_info_peer":"","recordfiles_desc":""},"sub_cdr_2":{"AcctId":"71048","dst":"203","dstchannel":"PJSIP/203-000004eb","duration":"30","billsec":"30","disposition":"ANSWERED","recordfiles":"2022-08/auto-1661157307-07XXXXXXXXX-203.wav@","session":"166115730767640-203","wave_dst_seqid":"1257","device_info_peer":"GXP2160","recordfiles_desc":"duration=31,size=489324B,start-time=1661157307@"}}
]"#;

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// A frozen-clock simulator with no generated traffic unless the test asks for it.
fn quiet() -> SimConfig {
    SimConfig {
        start_time: Some(t("2024-05-01 12:00:00")),
        clock_speed: 0.0,
        calls_per_hour: 0.0,
        ..SimConfig::default()
    }
}

struct Ucm {
    sim: SimHandle,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Ucm {
    async fn start(cfg: SimConfig) -> Ucm {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = sim::start(cfg).await.unwrap();
        let cert = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .unwrap();
        Ucm {
            sim,
            http,
            cookie: None,
        }
    }

    /// Raw exchange: HTTP status and body text.
    async fn raw(&self, request: Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/api", self.sim.url()))
            .body(json!({ "request": request }).to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn call(&self, request: Value) -> Value {
        let (status, body) = self.raw(request).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    async fn login_with(&self, password: &str) -> Value {
        let c = self
            .call(json!({"action": "challenge", "user": "cdrapi", "version": "1.0"}))
            .await;
        let challenge = c["response"]["challenge"].as_str().unwrap().to_string();
        self.call(
            json!({"action": "login", "user": "cdrapi", "token": sim::token(&challenge, password)}),
        )
        .await
    }

    async fn login(&mut self) {
        let r = self.login_with("cdrapi-secret").await;
        assert_eq!(r["status"], 0, "{r}");
        self.cookie = Some(r["response"]["cookie"].as_str().unwrap().to_string());
    }

    async fn cdr(&self, mut params: Value) -> Value {
        params["action"] = json!("cdrapi");
        params["cookie"] = json!(self.cookie.clone().unwrap());
        params
            .as_object_mut()
            .unwrap()
            .entry("format")
            .or_insert(json!("json"));
        self.call(params).await
    }

    /// Every visible entry, paging by 1000.
    async fn all_entries(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let page = self
                .cdr(json!({"numRecords": "1000", "offset": out.len().to_string()}))
                .await;
            let rows = page["cdr_root"].as_array().unwrap().clone();
            let n = rows.len();
            out.extend(rows);
            if n < 1000 {
                return out;
            }
        }
    }
}

/// The JSON body of a response (reqwest is built without its `json` feature).
async fn body<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> T {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn flat(start: &str, duration: u32, src: &str) -> Value {
    json!({"cdr": format!("{start}-{src}"), "AcctId": "1", "src": src, "dst": "2000", "start": start,
           "answer": "", "end": "", "duration": duration.to_string(), "billsec": "0",
           "disposition": "NO ANSWER", "userfield": "Internal", "channel_ext": src,
           "dstchannel_ext": "2000", "dstchannel": "", "lastapp": "Dial"})
}

fn starts(page: &Value) -> Vec<String> {
    page["cdr_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("main_cdr").unwrap_or(e)["start"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn login_checks_the_md5_token_and_the_cookie() {
    let mut ucm = Ucm::start(quiet()).await;
    assert!(ucm.sim.url().starts_with("https://127.0.0.1:"));
    assert_eq!(
        std::fs::read_to_string(ucm.sim.ca_path()).unwrap(),
        ucm.sim.ca_pem()
    );

    let wrong = ucm.login_with("not-the-password").await;
    assert_eq!(wrong, json!({"response": {"remain_num": 4}, "status": -37}));

    // A challenge answers one login only.
    let c = ucm
        .call(json!({"action": "challenge", "user": "cdrapi"}))
        .await;
    let token = sim::token(
        c["response"]["challenge"].as_str().unwrap(),
        "cdrapi-secret",
    );
    let ok = ucm
        .call(json!({"action": "login", "user": "cdrapi", "token": token}))
        .await;
    assert_eq!(ok["status"], 0);
    assert!(ok["response"]["cookie"]
        .as_str()
        .unwrap()
        .starts_with("sid"));
    let replay = ucm
        .call(json!({"action": "login", "user": "cdrapi", "token": token}))
        .await;
    assert_eq!(replay["status"], -37);

    ucm.login().await;
    let cookie = ucm.cookie.clone().unwrap();
    let status = ucm
        .call(json!({"action": "getSystemStatus", "cookie": cookie}))
        .await;
    assert_eq!(status["status"], 0);
    assert_eq!(status["response"]["up-time"], "00:00:00");
    assert_eq!(
        ucm.call(json!({"action": "getSystemStatus"})).await,
        json!({"response": {}, "status": -5})
    );
    assert_eq!(
        ucm.call(json!({"action": "getSystemStatus", "cookie": "sid1-1"}))
            .await["status"],
        -6
    );
    let unknown = ucm
        .call(json!({"action": "rebootSystem", "cookie": cookie}))
        .await;
    assert_eq!(
        unknown,
        json!({"response": {"error_msg": "Invalid parameters!"}, "status": -1})
    );
    // The wrong-endpoint mistake of docs/ucm-api.md §2.1.
    let r = ucm
        .http
        .post(format!("{}/api/challenge", ucm.sim.url()))
        .body(r#"{"request":{"action":"challenge","user":"cdrapi"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(body::<Value>(r).await["status"], -1);

    assert_eq!(
        ucm.call(json!({"action": "logout", "cookie": cookie}))
            .await["status"],
        0
    );
    assert_eq!(
        ucm.call(json!({"action": "getSystemStatus", "cookie": cookie}))
            .await["status"],
        -6
    );

    let stats = ucm.sim.stats();
    assert_eq!(
        (stats.logins_ok, stats.logins_failed, stats.sessions_created),
        (2, 2, 2)
    );
    assert_eq!(stats.requests["challenge"], 3);
    assert_eq!(stats.requests["login"], 4);
    assert!(stats.bytes_sent > 0);
}

#[tokio::test]
async fn sliding_cookie_lives_while_used() {
    let mut ucm = Ucm::start(quiet()).await;
    ucm.login().await;
    let ping = json!({"action": "getSystemGeneralStatus", "cookie": ucm.cookie.clone().unwrap()});
    for _ in 0..3 {
        ucm.sim.advance(Duration::from_secs(599));
        assert_eq!(ucm.call(ping.clone()).await["status"], 0);
    }
    ucm.sim.advance(Duration::from_secs(600));
    assert_eq!(ucm.call(ping).await["status"], -6);
}

#[tokio::test]
async fn absolute_cookie_dies_at_its_ttl() {
    let mut ucm = Ucm::start(SimConfig {
        cookie_mode: CookieMode::Absolute,
        cookie_ttl: Duration::from_secs(120),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let ping = json!({"action": "listVoIPTrunk", "cookie": ucm.cookie.clone().unwrap()});
    ucm.sim.advance(Duration::from_secs(100));
    assert_eq!(ucm.call(ping.clone()).await["response"]["total_item"], 4);
    ucm.sim.advance(Duration::from_secs(20));
    assert_eq!(ucm.call(ping).await["status"], -6);
}

#[tokio::test]
async fn repeated_failures_lock_the_client_out() {
    let mut ucm = Ucm::start(SimConfig {
        lockout_attempts: 3,
        ..quiet()
    })
    .await;
    let remains: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(ucm.login_with("guess").await);
        }
        v
    };
    assert_eq!(
        remains
            .iter()
            .map(|r| (r["status"].clone(), r["response"]["remain_num"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!(-37), json!(2)),
            (json!(-37), json!(1)),
            (json!(-37), json!(0))
        ]
    );
    // Even the right password is refused while locked.
    assert_eq!(
        ucm.login_with("cdrapi-secret").await,
        json!({"response": {"remain_time": 300}, "status": -68})
    );
    ucm.sim.advance(Duration::from_secs(299));
    assert_eq!(ucm.login_with("cdrapi-secret").await["status"], -68);
    ucm.sim.advance(Duration::from_secs(1));
    ucm.login().await;
    assert_eq!(ucm.sim.stats().logins_failed, 5);
}

#[tokio::test]
async fn paging_filters_and_the_silent_empty_result() {
    let mut ucm = Ucm::start(SimConfig {
        max_records: 20,
        ..quiet()
    })
    .await;
    // 25 calls, injected out of order, one second apart from 10:00:00; one of them grouped.
    for i in (0..25).rev() {
        let start = format!("2024-05-01 10:00:{i:02}");
        if i == 7 {
            ucm.sim.add_call(json!({"cdr": "g", "main_cdr": {"start": start, "src": "2001", "dst": "6400", "duration": "8", "billsec": "0"},
                "sub_cdr_1": flat(&start, 4, "2001"), "sub_cdr_2": flat(&start, 4, "2001")}));
        } else {
            ucm.sim.add_call(flat(&start, 5, "2001"));
        }
    }
    ucm.login().await;

    let p1 = ucm.cdr(json!({"numRecords": "10", "offset": "0"})).await;
    let p2 = ucm.cdr(json!({"numRecords": 10, "offset": 10})).await;
    let p3 = ucm.cdr(json!({"numRecords": "10", "offset": "20"})).await;
    let all: Vec<String> = [starts(&p1), starts(&p2), starts(&p3)].concat();
    let expected: Vec<String> = (0..25)
        .map(|i| format!("2024-05-01 10:00:{i:02}"))
        .collect();
    assert_eq!(all, expected);
    assert!(p1["cdr_root"][7]["main_cdr"].is_object());
    assert_eq!(p1.as_object().unwrap().len(), 1, "bare cdr_root, no status");
    assert_eq!(
        ucm.cdr(json!({"numRecords": "10", "offset": "25"})).await,
        json!({"cdr_root": []})
    );

    // numRecords is capped (here at 20); missing means the legacy default, also capped.
    assert_eq!(
        starts(&ucm.cdr(json!({"numRecords": "5000"})).await).len(),
        20
    );
    assert_eq!(starts(&ucm.cdr(json!({})).await).len(), 20);

    // startTime/endTime select on call start, inclusive, in every accepted format.
    for (from, to) in [
        ("2024-05-01T10:00:05", "2024-05-01T10:00:09"),
        ("2024-05-01 10:00:05", "2024-05-01 10:00:09.000"),
        ("2024-05-01T10:00:05+00:00", "2024-05-01T10:00:09Z"),
        ("1714557605", "1714557609"),
    ] {
        let page = ucm.cdr(json!({"startTime": from, "endTime": to})).await;
        assert_eq!(starts(&page), expected[5..10], "{from} .. {to}");
    }
    assert_eq!(
        starts(&ucm.cdr(json!({"startTime": "2024-05-01T10:00"})).await).len(),
        20
    );
    assert_eq!(
        starts(
            &ucm.cdr(json!({"startTime": "2024-05-01T10:00:20", "numRecords": "3", "offset": "1"}))
                .await
        ),
        expected[21..24]
    );

    // Unreadable filters: an empty list, not an error.
    for bad in [
        json!({"startTime": "yesterday"}),
        json!({"endTime": "2024-05-01T25:00"}),
        json!({"numRecords": "ten"}),
        json!({"offset": "-1"}),
        json!({"caller": "20;01"}),
        json!({"format": "yaml"}),
    ] {
        assert_eq!(ucm.cdr(bad.clone()).await, json!({"cdr_root": []}), "{bad}");
    }
    // caller/callee patterns filter on src/dst.
    assert_eq!(
        starts(
            &ucm.cdr(json!({"caller": "2000-2005", "callee": "_0@"}))
                .await
        )
        .len(),
        20
    );
    assert_eq!(
        ucm.cdr(json!({"caller": "3@"})).await,
        json!({"cdr_root": []})
    );

    // Without format the legacy default, CSV, one line per leg.
    let (status, csv) = ucm
        .raw(json!({"action": "cdrapi", "cookie": ucm.cookie.clone().unwrap(), "numRecords": "10"}))
        .await;
    assert_eq!((status, csv.lines().count()), (200, 11));
    assert_eq!(
        ucm.sim.stats().cdr_entries_served,
        25 + 40 + 20 + 20 + 3 + 20 + 10
    );
}

#[tokio::test]
async fn a_call_is_visible_only_once_it_has_ended() {
    let mut ucm = Ucm::start(quiet()).await;
    ucm.login().await;
    // Started 10 s ago, lasts 60 s: in progress.
    ucm.sim.add_call(json!({"cdr": "x", "main_cdr": {"start": "2024-05-01 11:59:50", "duration": "60", "billsec": "50"},
        "sub_cdr_1": {"start": "2024-05-01 11:59:50", "duration": "10", "billsec": "0", "disposition": "NO ANSWER"},
        "sub_cdr_2": {"start": "2024-05-01 12:00:00", "duration": "50", "billsec": "50", "disposition": "ANSWERED", "dstchannel": "PJSIP/2001-1"}}));
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    ucm.sim.advance(Duration::from_secs(49));
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    assert_eq!(
        ucm.sim
            .truth(t("2024-05-01 00:00:00"), t("2024-05-02 00:00:00"))
            .total_calls,
        0
    );
    ucm.sim.advance(Duration::from_secs(1));
    assert_eq!(starts(&ucm.cdr(json!({})).await), ["2024-05-01 11:59:50"]);
    let truth = ucm
        .sim
        .truth(t("2024-05-01 12:00:49"), t("2024-05-01 12:00:50"));
    assert_eq!((truth.total_calls, truth.records), (1, 2));
    assert_eq!(
        ucm.sim
            .truth(t("2024-05-01 12:00:50"), t("2024-05-01 13:00:00"))
            .total_calls,
        0
    );

    // Generated live traffic follows the same rule.
    let mut live = Ucm::start(SimConfig {
        calls_per_hour: 600.0,
        history: Duration::ZERO,
        ..quiet()
    })
    .await;
    live.login().await;
    assert_eq!(live.cdr(json!({})).await, json!({"cdr_root": []}));
    live.sim.advance(Duration::from_secs(3600));
    live.login().await;
    let entries = live.all_entries().await;
    assert!(entries.len() > 100, "{}", entries.len());
    let now = live.sim.now();
    for e in &entries {
        let legs: Vec<&Value> = match e.get("main_cdr") {
            Some(_) => e
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with("sub_cdr_"))
                .map(|(_, v)| v)
                .collect(),
            None => vec![e],
        };
        for l in legs {
            assert!(leg_end(l) <= now, "{l}");
        }
    }
}

/// A leg's end: its `end`, or its start and duration where it was written without one (a call
/// that failed before it was set up).
fn leg_end(l: &Value) -> NaiveDateTime {
    match l["end"].as_str().unwrap() {
        "" => {
            let secs: i64 = l["duration"].as_str().unwrap().parse().unwrap();
            t(l["start"].as_str().unwrap()) + chrono::Duration::seconds(secs)
        }
        end => t(end),
    }
}

async fn sweep(seed: u64, steps: &[u64]) -> Vec<Value> {
    let mut ucm = Ucm::start(SimConfig {
        seed,
        calls_per_hour: 120.0,
        history: Duration::from_secs(3 * 3600),
        ..quiet()
    })
    .await;
    for s in steps {
        ucm.sim.advance(Duration::from_secs(*s));
    }
    ucm.login().await;
    ucm.all_entries().await
}

#[tokio::test]
async fn same_seed_same_cdrs_whatever_the_steps() {
    let a = sweep(42, &[7200]).await;
    let b = sweep(42, &[10, 3000, 190, 4000]).await;
    let c = sweep(43, &[7200]).await;
    assert!(a.len() > 200, "{}", a.len());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn truth_classifies_the_reference_examples() {
    let ucm = Ucm::start(quiet()).await;
    let examples: Value = serde_json::from_str(REFERENCE_EXAMPLES).unwrap();
    for e in examples.as_array().unwrap() {
        ucm.sim.add_call(e.clone());
    }
    let truth = ucm
        .sim
        .truth(t("2020-01-01 00:00:00"), t("2024-05-01 12:00:00"));
    let k3 = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    let k2 = |a: &str, b: &str| (a.to_string(), b.to_string());
    let expected = Truth {
        calls: BTreeMap::from([
            (k3("internal", "", "answered"), 1),
            (k3("inbound", "groff", "voicemail"), 1),
            (k3("inbound", "Daisy", "answered"), 1),
        ]),
        talk: BTreeMap::from([
            (k2("internal", ""), (1, 6)),
            (k2("inbound", "Daisy"), (1, 30)),
        ]),
        wait: BTreeMap::from([
            (k3("internal", "", "answered"), (1, 6)),
            (k3("inbound", "groff", "voicemail"), (1, 16)),
            (k3("inbound", "Daisy", "answered"), (1, 0)),
        ]),
        extension_calls: BTreeMap::from([
            (k3("2001", "caller", "answered"), 1),
            (k3("2000", "callee", "answered"), 1),
            (k3("2004", "callee", "voicemail"), 1),
        ]),
        extension_talk: BTreeMap::from([(k2("2001", "caller"), 6), (k2("2000", "callee"), 6)]),
        records: 5,
        newest_start: Some(t("2023-05-12 10:47:46")),
        total_calls: 3,
        ..Truth::default()
    };
    assert_eq!(truth, expected);
}

/// Truth and the served CDRs are two views of the same calls.
#[tokio::test]
async fn truth_matches_what_is_served() {
    let mut ucm = Ucm::start(SimConfig {
        calls_per_hour: 200.0,
        history: Duration::from_secs(6 * 3600),
        ..quiet()
    })
    .await;
    ucm.sim.advance(Duration::from_secs(1800));
    ucm.login().await;
    let mut mine = Truth::default();
    for e in ucm.all_entries().await {
        if let Some(c) = sim::classify(&e) {
            mine.add(&c);
        }
    }
    let truth = ucm.sim.truth(t("2000-01-01 00:00:00"), ucm.sim.now());
    assert!(truth.total_calls > 300);
    assert_eq!(truth, mine);
    let first_half = ucm
        .sim
        .truth(t("2000-01-01 00:00:00"), t("2024-05-01 09:00:00"));
    let second_half = ucm.sim.truth(t("2024-05-01 09:00:00"), ucm.sim.now());
    assert_eq!(
        first_half.total_calls + second_half.total_calls,
        truth.total_calls
    );
}

#[tokio::test]
async fn faults_switch_on_and_off() {
    let mut ucm = Ucm::start(SimConfig {
        calls_per_hour: 300.0,
        history: Duration::from_secs(3600),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let cookie = ucm.cookie.clone().unwrap();
    let q = json!({"action": "cdrapi", "cookie": cookie, "format": "json", "numRecords": "10"});
    let once = |fault| FaultRule {
        fault,
        action: Some("cdrapi".into()),
        times: Some(1),
    };

    ucm.sim.add_fault(once(Fault::Http500));
    assert_eq!(ucm.raw(q.clone()).await.0, 500);
    assert_eq!(ucm.raw(q.clone()).await.0, 200);

    ucm.sim.add_fault(once(Fault::Html403));
    let (status, body) = ucm.raw(q.clone()).await;
    assert_eq!(status, 403);
    assert!(body.contains("403 Forbidden"));

    ucm.sim.add_fault(once(Fault::Garbage));
    let (status, body) = ucm.raw(q.clone()).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    ucm.sim.add_fault(once(Fault::Truncated));
    let (_, cut) = ucm.raw(q.clone()).await;
    let (_, whole) = ucm.raw(q.clone()).await;
    assert_eq!(cut, whole[..whole.len() / 2]);
    assert!(serde_json::from_str::<Value>(&cut).is_err());

    ucm.sim.add_fault(FaultRule {
        fault: Fault::Status(-45),
        action: None,
        times: Some(2),
    });
    assert_eq!(
        ucm.call(q.clone()).await,
        json!({"response": {}, "status": -45})
    );
    assert_eq!(
        ucm.call(json!({"action": "listAccount", "cookie": cookie}))
            .await["status"],
        -45
    );
    assert_eq!(
        ucm.call(q.clone()).await["cdr_root"]
            .as_array()
            .unwrap()
            .len(),
        10
    );

    ucm.sim
        .add_fault(once(Fault::Delay(Duration::from_millis(300))));
    let began = Instant::now();
    assert_eq!(
        ucm.call(q.clone()).await["cdr_root"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert!(began.elapsed() >= Duration::from_millis(300));

    ucm.sim.add_fault(FaultRule {
        fault: Fault::InvalidateAfterPages(2),
        action: None,
        times: None,
    });
    assert!(ucm.call(q.clone()).await["cdr_root"].is_array());
    assert!(ucm.call(q.clone()).await["cdr_root"].is_array());
    assert_eq!(ucm.call(q.clone()).await["status"], -6);

    ucm.sim.add_fault(FaultRule {
        fault: Fault::LoginFails,
        action: None,
        times: None,
    });
    assert_eq!(ucm.login_with("cdrapi-secret").await["status"], -37);
    ucm.sim.clear_faults();
    ucm.login().await;
    ucm.sim.invalidate_sessions();
    assert_eq!(ucm.cdr(json!({})).await["status"], -6);

    let stats = ucm.sim.stats();
    assert_eq!(stats.requests["cdrapi"], 13);
    assert_eq!(stats.logins_failed, 1);
}

#[tokio::test]
async fn plain_http_admin_endpoint_and_status_actions() {
    let cfg = SimConfig {
        tls: false,
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        calls_per_hour: 400.0,
        ..quiet()
    };
    let mut ucm = Ucm::start(cfg).await;
    assert!(ucm.sim.url().starts_with("http://127.0.0.1:"));
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{admin}{path}")).send();
    assert_eq!(
        body::<Value>(get("/now").await.unwrap()).await,
        "2024-05-01T12:00:00"
    );
    let moved: Value = body(
        http.post(format!("{admin}/advance?seconds=90"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(moved, "2024-05-01T12:01:30");
    assert_eq!(ucm.sim.now(), t("2024-05-01 12:01:30"));

    ucm.login().await;
    let cookie = ucm.cookie.clone().unwrap();
    let rule = json!({"fault": {"Status": -57}, "action": "listAccount", "times": 1});
    assert!(http
        .post(format!("{admin}/faults"))
        .body(rule.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(
        ucm.call(json!({"action": "listAccount", "cookie": cookie}))
            .await["status"],
        -57
    );
    let accounts = ucm
        .call(json!({"action": "listAccount", "cookie": cookie, "item_num": "100", "page": "1"}))
        .await;
    assert_eq!(accounts["response"]["total_item"], 20);
    assert_eq!(
        accounts["response"]["account"].as_array().unwrap().len(),
        20
    );
    assert!(accounts["response"]["account"][0]["newmsg"].is_number());
    let bridged = ucm
        .call(json!({"action": "listBridgedChannels", "cookie": cookie}))
        .await;
    assert!(bridged["response"]["channel"].is_array());
    let general = ucm
        .call(json!({"action": "getSystemGeneralStatus", "cookie": cookie}))
        .await;
    assert_eq!(general["response"]["prog-version"], "1.0.17.11");

    let stats: sim::Stats = body(get("/stats").await.unwrap()).await;
    assert_eq!(stats.requests["listAccount"], 2);
    let truth: Truth = body(
        get("/truth?after=2024-04-30T12:00:00&until=2024-05-01T12:01:30")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        truth,
        ucm.sim
            .truth(t("2024-04-30 12:00:00"), t("2024-05-01 12:01:30"))
    );
    assert!(truth.total_calls > 1000);
    assert!(http
        .post(format!("{admin}/invalidate"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(
        ucm.call(json!({"action": "getSystemStatus", "cookie": cookie}))
            .await["status"],
        -6
    );
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    ucm.sim.shutdown().await;
}

/// A burst placed through the admin endpoint appears as its calls end, with the outcome asked,
/// and the truth counts it; bad parameters are refused with what to give.
#[tokio::test]
async fn bursts_through_the_admin_endpoint() {
    let cfg = SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    };
    let mut ucm = Ucm::start(cfg).await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let post = |q: &str| http.post(format!("{admin}/bursts?{q}")).send();
    for (q, says) in [
        ("calls=5&seconds=60", "missing outcome"),
        (
            "outcome=lost&calls=5&seconds=60",
            "missed, answered or abandoned",
        ),
        ("outcome=missed&seconds=60", "missing calls"),
        ("outcome=missed&calls=5", "missing seconds"),
        ("outcome=missed&calls=5&seconds=60&trunk=Nope", "Telekom"),
    ] {
        let r = post(q).await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{q}: {text}");
    }
    assert!(post("outcome=missed&calls=6&seconds=300&trunk=groff")
        .await
        .unwrap()
        .status()
        .is_success());
    let from = ucm.sim.now();
    ucm.login().await;
    assert!(ucm.all_entries().await.is_empty(), "nothing has ended yet");
    ucm.sim.advance(Duration::from_secs(400));
    assert_eq!(ucm.all_entries().await.len(), 6);
    let truth = ucm.sim.truth(from, ucm.sim.now());
    assert_eq!(
        truth.calls,
        [(
            (
                "inbound".to_string(),
                "groff".to_string(),
                "no_answer".to_string()
            ),
            6
        )]
        .into_iter()
        .collect()
    );
    ucm.sim.shutdown().await;
}

// Quirks: a UCM that bends the uncertain parts of docs/ucm-api.md.

fn srcs(page: &Value) -> Vec<String> {
    page["cdr_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["src"].as_str().unwrap().to_string())
        .collect()
}

/// 25 flat calls, one second apart from 10:00:00, each 5 s long.
fn twenty_five(sim: &SimHandle) -> Vec<String> {
    (0..25)
        .map(|i| {
            let start = format!("2024-05-01 10:00:{i:02}");
            sim.add_call(flat(&start, 5, "2001"));
            start
        })
        .collect()
}

#[tokio::test]
async fn page_cap_quirk_caps_pages_at_run_time() {
    let mut ucm = Ucm::start(SimConfig {
        max_records: 20,
        ..quiet()
    })
    .await;
    let expected = twenty_five(&ucm.sim);
    ucm.login().await;
    let asked = |offset: usize| json!({"numRecords": "1000", "offset": offset.to_string()});
    assert_eq!(starts(&ucm.cdr(asked(0)).await).len(), 20, "max_records");

    ucm.sim.set_quirks(Quirks {
        page_cap: Some(10),
        ..Quirks::default()
    });
    assert_eq!(ucm.sim.quirks().page_cap, Some(10));
    let mut all = Vec::new();
    for offset in [0, 10, 20] {
        all.extend(starts(&ucm.cdr(asked(offset)).await));
    }
    assert_eq!(all, expected, "paging by what came back reads everything");
    assert_eq!(starts(&ucm.cdr(asked(0)).await).len(), 10);
    assert_eq!(
        starts(&ucm.cdr(json!({"numRecords": "3"})).await).len(),
        3,
        "asking for less than the cap"
    );

    // The quirk replaces max_records, so a UCM can also answer more than the documented cap.
    ucm.sim.set_quirks(Quirks {
        page_cap: Some(2000),
        ..Quirks::default()
    });
    assert_eq!(starts(&ucm.cdr(asked(0)).await).len(), 25);
    ucm.sim.set_quirks(Quirks::default());
    assert_eq!(starts(&ucm.cdr(asked(0)).await).len(), 20);
    assert_eq!(ucm.sim.stats().cdrapi_pages, 8);
}

#[tokio::test]
#[should_panic(expected = "page_cap")]
async fn page_cap_of_zero_is_refused() {
    let ucm = Ucm::start(quiet()).await;
    ucm.sim.set_quirks(Quirks {
        page_cap: Some(0),
        ..Quirks::default()
    });
}

#[tokio::test]
async fn ignore_offset_quirk_repeats_the_first_page() {
    let mut ucm = Ucm::start(SimConfig {
        quirks: Quirks {
            ignore_offset: true,
            ..Quirks::default()
        },
        ..quiet()
    })
    .await;
    let expected = twenty_five(&ucm.sim);
    ucm.login().await;
    for offset in ["0", "10", "20", "25", "1000"] {
        let page = ucm.cdr(json!({"numRecords": "10", "offset": offset})).await;
        assert_eq!(starts(&page), expected[..10], "offset {offset}");
    }
    // Filters still apply; only the offset is ignored.
    let page = ucm
        .cdr(json!({"startTime": "2024-05-01T10:00:20", "numRecords": "3", "offset": "1"}))
        .await;
    assert_eq!(starts(&page), expected[20..23]);
    ucm.sim.set_quirks(Quirks::default());
    let page = ucm.cdr(json!({"numRecords": "10", "offset": "20"})).await;
    assert_eq!(starts(&page), expected[20..]);
}

#[tokio::test]
async fn order_quirk_sorts_before_paging() {
    let mut ucm = Ucm::start(quiet()).await;
    // (src, start, duration): call starts and ends come in different orders.
    for (src, start, duration) in [
        ("2001", "2024-05-01 10:00:00", 300), // ends 10:05:00
        ("2002", "2024-05-01 10:01:00", 10),  // ends 10:01:10
        ("2003", "2024-05-01 10:02:00", 100), // ends 10:03:40
        ("2004", "2024-05-01 10:03:00", 30),  // ends 10:03:30
    ] {
        ucm.sim.add_call(flat(start, duration, src));
    }
    ucm.login().await;
    for (order, expected) in [
        (Order::StartAsc, ["2001", "2002", "2003", "2004"]),
        (Order::EndAsc, ["2002", "2004", "2003", "2001"]),
        (Order::StartDesc, ["2004", "2003", "2002", "2001"]),
    ] {
        ucm.sim.set_quirks(Quirks {
            order,
            ..Quirks::default()
        });
        assert_eq!(srcs(&ucm.cdr(json!({})).await), expected, "{order:?}");
        // offset counts in the same order.
        let mut paged = srcs(&ucm.cdr(json!({"numRecords": "3", "offset": "0"})).await);
        paged.extend(srcs(
            &ucm.cdr(json!({"numRecords": "3", "offset": "3"})).await,
        ));
        assert_eq!(paged, expected, "{order:?} paged");
    }
    // The start filter selects before sorting.
    let page = ucm
        .cdr(json!({"startTime": "2024-05-01T10:01:00", "endTime": "2024-05-01T10:02:00"}))
        .await;
    assert_eq!(srcs(&page), ["2003", "2002"]);
}

#[tokio::test]
async fn silent_expiry_quirk_answers_dead_sessions_an_empty_list() {
    let mut ucm = Ucm::start(quiet()).await;
    twenty_five(&ucm.sim);
    ucm.login().await;
    assert_eq!(starts(&ucm.cdr(json!({})).await).len(), 25);
    ucm.sim.invalidate_sessions();
    assert_eq!(ucm.cdr(json!({})).await["status"], -6);

    ucm.sim.set_quirks(Quirks {
        silent_expiry: true,
        ..Quirks::default()
    });
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    let cookie = ucm.cookie.clone().unwrap();
    assert_eq!(
        ucm.call(json!({"action": "getSystemStatus", "cookie": cookie}))
            .await["status"],
        -6,
        "only cdrapi is silent"
    );
    assert_eq!(
        ucm.call(json!({"action": "cdrapi", "format": "json"}))
            .await["status"],
        -5,
        "no cookie at all is still -5"
    );
    // Expiry by lifetime is silent too.
    ucm.login().await;
    assert_eq!(starts(&ucm.cdr(json!({})).await).len(), 25);
    ucm.sim.advance(Duration::from_secs(600));
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    ucm.login().await;
    assert_eq!(starts(&ucm.cdr(json!({})).await).len(), 25);

    let stats = ucm.sim.stats();
    assert_eq!((stats.silent_expiry_pages, stats.cdrapi_pages), (2, 3));
}

#[tokio::test]
async fn silently_expire_after_pages_fault_ends_one_session_quietly() {
    let mut ucm = Ucm::start(quiet()).await;
    let expected = twenty_five(&ucm.sim);
    ucm.login().await;
    ucm.sim.add_fault(FaultRule {
        fault: Fault::SilentlyExpireAfterPages(2),
        action: None,
        times: None,
    });
    let page = |offset: &str| json!({"numRecords": "10", "offset": offset});
    assert_eq!(starts(&ucm.cdr(page("0")).await), expected[..10]);
    assert_eq!(starts(&ucm.cdr(page("10")).await), expected[10..20]);
    // The third page would hold five entries; the session died without saying so.
    assert_eq!(ucm.cdr(page("20")).await, json!({"cdr_root": []}));
    assert_eq!(ucm.cdr(page("0")).await, json!({"cdr_root": []}));
    let cookie = ucm.cookie.clone().unwrap();
    assert_eq!(
        ucm.call(json!({"action": "listAccount", "cookie": cookie}))
            .await["status"],
        -6
    );
    // The fault fired once: a new session reads on.
    ucm.login().await;
    assert_eq!(starts(&ucm.cdr(page("20")).await), expected[20..]);
    assert_eq!(starts(&ucm.cdr(page("0")).await), expected[..10]);
    let stats = ucm.sim.stats();
    assert_eq!((stats.cdrapi_pages, stats.silent_expiry_pages), (4, 2));
    assert_eq!(stats.cdr_entries_served, 35);
}

#[tokio::test]
async fn filter_reads_utc_quirk_shifts_the_filter_window() {
    // Berlin is UTC+2 in May; CDR times are Berlin local.
    let mut ucm = Ucm::start(SimConfig {
        timezone: chrono_tz::Europe::Berlin,
        ..quiet()
    })
    .await;
    for h in ["09", "10", "11"] {
        ucm.sim
            .add_call(flat(&format!("2024-05-01 {h}:00:00"), 5, "2001"));
    }
    ucm.login().await;
    let window = json!({"startTime": "2024-05-01T08:30:00", "endTime": "2024-05-01T10:00:00"});
    let local = [
        "2024-05-01 09:00:00".to_string(),
        "2024-05-01 10:00:00".to_string(),
    ];
    assert_eq!(starts(&ucm.cdr(window.clone()).await), local);

    ucm.sim.set_quirks(Quirks {
        filter_reads_utc: true,
        ..Quirks::default()
    });
    // 08:30..10:00 UTC is 10:30..12:00 in Berlin: the window moved two hours later, and the
    // entries still carry local times.
    assert_eq!(
        starts(&ucm.cdr(window).await),
        ["2024-05-01 11:00:00".to_string()]
    );
    // A time that names its offset, and Unix seconds, mean the same instant either way.
    let explicit = json!({"startTime": "2024-05-01T08:30:00+02:00", "endTime": "1714550400"});
    assert_eq!(starts(&ucm.cdr(explicit.clone()).await), local);
    ucm.sim.set_quirks(Quirks::default());
    assert_eq!(starts(&ucm.cdr(explicit).await), local);
}

#[tokio::test]
async fn a_call_can_be_visible_ahead_of_the_clock() {
    let mut ucm = Ucm::start(quiet()).await;
    ucm.login().await;
    // Starts tomorrow: a bogus row, or one written before the clock was corrected backwards.
    let ahead = flat("2024-05-02 08:00:00", 30, "2009");
    ucm.sim.add_call(ahead.clone());
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    ucm.sim.add_call_visible_now(ahead.clone());
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": [ahead]}));
    let early = t("2000-01-01 00:00:00");
    let truth = ucm.sim.truth(early, ucm.sim.now());
    assert_eq!(truth.total_calls, 1);
    assert_eq!(truth.newest_start, Some(t("2024-05-02 08:00:00")));
    assert_eq!(
        ucm.sim.truth(early, t("2024-05-01 11:59:59")).total_calls,
        0,
        "counted at the reading it appeared"
    );
}

/// Everything the UCM serves, classified: what `truth(early, now)` must equal.
async fn served_truth(ucm: &Ucm) -> (Truth, Vec<Value>) {
    let entries = ucm.all_entries().await;
    let mut truth = Truth::default();
    for e in &entries {
        if let Some(c) = sim::classify(e) {
            truth.add(&c);
        }
    }
    (truth, entries)
}

fn count_started(entries: &[Value], from: &str, to: &str) -> usize {
    entries
        .iter()
        .filter(|e| {
            let s = t(e.get("main_cdr").unwrap_or(e)["start"].as_str().unwrap());
            s > t(from) && s <= t(to)
        })
        .count()
}

#[tokio::test]
async fn clock_steps_stamp_new_calls_and_keep_old_ones() {
    let cfg = SimConfig {
        calls_per_hour: 600.0,
        history: Duration::from_secs(3600),
        ..quiet()
    };
    let early = t("2000-01-01 00:00:00");
    let mut ucm = Ucm::start(cfg.clone()).await;
    ucm.sim.advance(Duration::from_secs(1800));
    ucm.login().await;
    ucm.sim.step_clock(chrono::Duration::hours(2));
    assert_eq!(ucm.sim.now(), t("2024-05-01 14:30:00"));
    // Sessions run on time that passes, not on the clock.
    assert!(ucm.cdr(json!({"numRecords": "1"})).await["cdr_root"].is_array());
    ucm.sim.advance(Duration::from_secs(1800));
    ucm.login().await;
    let (before_back, _) = served_truth(&ucm).await;
    assert_eq!(before_back, ucm.sim.truth(early, ucm.sim.now()));

    ucm.sim.step_clock(chrono::Duration::hours(-3));
    assert_eq!(ucm.sim.now(), t("2024-05-01 12:00:00"));
    assert_eq!(ucm.sim.start_time(), t("2024-05-01 12:00:00"));
    // Nothing served before the step back disappears, though much of it now lies ahead.
    let (after_back, entries) = served_truth(&ucm).await;
    assert_eq!(after_back, before_back);
    assert!(count_started(&entries, "2024-05-01 14:30:00", "2024-05-01 15:00:00") > 100);
    assert_eq!(after_back, ucm.sim.truth(early, ucm.sim.now()));

    ucm.sim.advance(Duration::from_secs(1800));
    assert_eq!(ucm.sim.now(), t("2024-05-01 12:30:00"));
    ucm.login().await;
    let (last, entries) = served_truth(&ucm).await;
    assert_eq!(last, ucm.sim.truth(early, ucm.sim.now()));
    assert!(last.total_calls > after_back.total_calls);

    // The same seed without steps: every half hour's calls carry the clock they were placed on.
    let plain = Ucm::start(cfg).await;
    let mut plain = plain;
    plain.sim.advance(Duration::from_secs(5400));
    plain.login().await;
    let reference = plain.all_entries().await;
    let between = |e: &[Value], a: &str, b: &str| count_started(e, a, b);
    assert_eq!(
        between(&entries, "2024-05-01 14:30:00", "2024-05-01 15:00:00"),
        between(&reference, "2024-05-01 12:30:00", "2024-05-01 13:00:00"),
    );
    assert_eq!(
        between(&entries, "2024-05-01 12:00:00", "2024-05-01 12:30:00"),
        between(&reference, "2024-05-01 12:00:00", "2024-05-01 12:30:00")
            + between(&reference, "2024-05-01 13:00:00", "2024-05-01 13:30:00"),
        "after the step back, new calls reuse the times of earlier ones"
    );
    assert_eq!(entries.len(), reference.len());
}

/// A call that rang 2000 unanswered and was then answered by 2001: `no_answer` on its first leg,
/// `answered` in the end.
fn rang_then_answered() -> Value {
    let leg = |n: u32, start: &str, duration: u32, disposition: &str, ext: &str| {
        json!({"AcctId": n.to_string(), "session": "1714564680000001-030555", "uniqueid": "1714564680.7",
               "src": "030555", "dst": ext, "start": start, "duration": duration.to_string(),
               "billsec": if disposition == "ANSWERED" { (duration - 10).to_string() } else { "0".into() },
               "disposition": disposition, "userfield": "Inbound", "src_trunk_name": "groff",
               "channel": "PJSIP/trunk_2-00000001", "channel_ext": "trunk_2", "dstchannel_ext": ext,
               "dstchannel": if disposition == "ANSWERED" { format!("PJSIP/{ext}-00000002") } else { String::new() },
               "lastapp": "Dial", "action_type": "DIAL"})
    };
    json!({"cdr": "1714564680000001-030555",
           "main_cdr": {"session": "1714564680000001-030555", "src": "030555", "dst": "2000",
                        "start": "2024-05-01 11:58:00", "duration": "120", "billsec": "90", "action_type": "DIAL"},
           "sub_cdr_1": leg(1, "2024-05-01 11:58:00", 20, "NO ANSWER", "2000"),
           "sub_cdr_2": leg(2, "2024-05-01 11:58:20", 100, "ANSWERED", "2001")})
}

#[tokio::test]
async fn late_legs_quirk_serves_the_remaining_legs_later() {
    let mut ucm = Ucm::start(SimConfig {
        quirks: Quirks {
            late_legs_delay: Some(Duration::from_secs(120)),
            ..Quirks::default()
        },
        ..quiet()
    })
    .await;
    let whole = rang_then_answered();
    ucm.sim.add_call(whole.clone());
    ucm.sim.add_call(flat("2024-05-01 11:59:00", 30, "2005"));
    ucm.login().await;
    let k3 = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());

    let page = ucm.cdr(json!({})).await;
    let first = &page["cdr_root"][0];
    assert_eq!(first["sub_cdr_1"], whole["sub_cdr_1"]);
    assert!(first.get("sub_cdr_2").is_none(), "{first}");
    assert_eq!(
        first["main_cdr"]["duration"], "20",
        "sums over the legs written"
    );
    assert_eq!(first["main_cdr"]["billsec"], "0");
    assert_eq!(sim::classify(first).unwrap().disposition, "no_answer");
    assert_eq!(page["cdr_root"][1]["src"], "2005", "flat entries are whole");
    // Truth counts the call once, with its final outcome.
    let truth = ucm.sim.truth(t("2000-01-01 00:00:00"), ucm.sim.now());
    assert_eq!(truth.calls[&k3("inbound", "groff", "answered")], 1);
    assert_eq!(truth.total_calls, 2);
    assert_eq!(ucm.sim.stats().partial_entries_served, 1);

    // The call ended at 12:00:00; its second leg is written at 12:02:00.
    ucm.sim.advance(Duration::from_secs(119));
    assert!(ucm.cdr(json!({})).await["cdr_root"][0]
        .get("sub_cdr_2")
        .is_none());
    ucm.sim.advance(Duration::from_secs(1));
    let page = ucm.cdr(json!({})).await;
    assert_eq!(page["cdr_root"][0], whole);
    assert_eq!(
        sim::classify(&page["cdr_root"][0]).unwrap().disposition,
        "answered"
    );
    assert_eq!(ucm.sim.stats().partial_entries_served, 2);
    assert_eq!(
        ucm.sim.truth(t("2000-01-01 00:00:00"), ucm.sim.now()),
        truth
    );
}

#[tokio::test]
async fn late_legs_quirk_applies_to_generated_traffic() {
    let mut ucm = Ucm::start(SimConfig {
        calls_per_hour: 2000.0,
        history: Duration::from_secs(3600),
        start_time: Some(t("2024-05-01 10:00:00")),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let whole = ucm.all_entries().await;
    ucm.sim.set_quirks(Quirks {
        late_legs_delay: Some(Duration::from_secs(600)),
        ..Quirks::default()
    });
    let served = ucm.all_entries().await;
    assert_eq!(served.len(), whole.len());
    let mut partial = 0;
    for (s, w) in served.iter().zip(&whole) {
        let legs: Vec<(&String, &Value)> = w
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("sub_cdr_"))
            .collect();
        // A ForkCDR copy of the second leg, not a ForkCDR segment of its own (the IVR part).
        let (first, second) = (&w["sub_cdr_1"], &w["sub_cdr_2"]);
        let fork_first = first["lastapp"] == "ForkCDR"
            && first["channel"] == second["channel"]
            && first["start"] == second["start"];
        let has_late = legs.len() > if fork_first { 2 } else { 1 };
        let ended = legs
            .iter()
            .map(|(_, l)| l["end"].as_str().unwrap())
            .max()
            .unwrap_or("");
        // Held back while the call ended less than the delay (10 min) before now (10:00).
        if has_late && ended > "2024-05-01 09:50:00" {
            partial += 1;
            let early = if fork_first { 2 } else { 1 };
            let (s, w) = (s.as_object().unwrap(), w.as_object().unwrap());
            let kept: Vec<&String> = s.keys().filter(|k| k.starts_with("sub_cdr_")).collect();
            assert_eq!(kept.len(), early, "{s:?}");
            assert!(s.keys().all(|k| w.contains_key(k)));
            assert_eq!(s["sub_cdr_1"], w["sub_cdr_1"]);
        } else {
            assert_eq!(s, w);
        }
    }
    assert!(partial > 5, "{partial}");
    assert_eq!(ucm.sim.stats().partial_entries_served, partial);
    let mut final_truth = Truth::default();
    for e in &whole {
        final_truth.add(&sim::classify(e).unwrap());
    }
    assert_eq!(
        ucm.sim.truth(t("2000-01-01 00:00:00"), ucm.sim.now()),
        final_truth
    );
}

#[tokio::test]
async fn admin_endpoint_sets_quirks_steps_the_clock_and_refuses_bad_input() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        http.post(format!("{admin}{path}"))
            .body(body.to_string())
            .send()
    };
    let quirks: Quirks = body(http.get(format!("{admin}/quirks")).send().await.unwrap()).await;
    assert_eq!(quirks, Quirks::default());

    let set = post(
        "/quirks",
        r#"{"page_cap": 5, "order": "end-asc", "late_legs_delay": "90s", "silent_expiry": true}"#,
    )
    .await
    .unwrap();
    assert_eq!(set.status(), 200);
    let expected = Quirks {
        page_cap: Some(5),
        order: Order::EndAsc,
        late_legs_delay: Some(Duration::from_secs(90)),
        silent_expiry: true,
        ..Quirks::default()
    };
    assert_eq!(body::<Quirks>(set).await, expected);
    assert_eq!(ucm.sim.quirks(), expected);

    for (path, bad, says) in [
        ("/quirks", r#"{"page_cap": 0}"#, "page_cap"),
        ("/quirks", r#"{"page_cap": -3}"#, "page_cap: invalid value"),
        ("/quirks", r#"{"ignore_ofset": true}"#, "unknown field"),
        ("/quirks", r#"{"order": "sideways"}"#, "sideways"),
        (
            "/quirks",
            r#"{"late_legs_delay": "soon"}"#,
            "late_legs_delay",
        ),
        ("/quirks", "page_cap=5", "not Quirks"),
        ("/quirks", "[1]", "expected a JSON object"),
        ("/faults", r#"{"fault": "Meteor"}"#, "not a FaultRule"),
        ("/step", "", "missing seconds"),
        ("/step?seconds=1.5", "", "whole number"),
        ("/advance?seconds=-5", "", "whole number >= 0"),
        ("/advance?seconds=99999999999", "", "at most"),
        ("/step?seconds=-99999999999", "", "years 1-9999"),
        ("/step?seconds=99999999999999999", "", "too large"),
        ("/calls", "[]", "not a cdr_root entry"),
        ("/calls", r#"{"start": "soon"}"#, "not a cdr_root entry"),
        ("/calls", "{", "not JSON"),
        ("/calls?visible=later", "{}", "visible"),
    ] {
        let r = post(path, bad).await.unwrap();
        assert_eq!(r.status(), 400, "{path} {bad}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{path} {bad}: {text}");
    }
    assert_eq!(ucm.sim.quirks(), expected, "a refused POST changes nothing");
    for query in [
        "after=2024-05-01&until=2024-05-01T12:00:00",
        "after=2024-05-01T00:00:00",
        "after=2024-05-01T00:00:00&until=2024-05-01T12:00:00&started_from=noon",
    ] {
        let r = http
            .get(format!("{admin}/truth?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    let wrong_method = http.delete(format!("{admin}/quirks")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");

    // The clock steps back and forward; an entry ahead of it can be made visible at once.
    let stepped: Value = body(post("/step?seconds=-3600", "").await.unwrap()).await;
    assert_eq!(stepped, "2024-05-01T11:00:00");
    let stepped: Value = body(post("/step?seconds=90", "").await.unwrap()).await;
    assert_eq!(stepped, "2024-05-01T11:01:30");
    assert_eq!(ucm.sim.now(), t("2024-05-01 11:01:30"));
    let ahead = flat("2024-05-01 11:30:00", 5, "2003");
    assert!(post("/calls", &ahead.to_string())
        .await
        .unwrap()
        .status()
        .is_success());
    ucm.login().await;
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": []}));
    assert!(post("/calls?visible=now", &ahead.to_string())
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(ucm.cdr(json!({})).await, json!({"cdr_root": [ahead]}));
    let truth: Truth = body(
        http.get(format!(
            "{admin}/truth?after=2024-05-01T00:00:00&until=2024-05-01T11:01:30&started_from=2024-05-01T11:30:00"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(truth.total_calls, 1);

    let stats: sim::Stats = body(http.get(format!("{admin}/stats")).send().await.unwrap()).await;
    assert_eq!((stats.cdrapi_pages, stats.cdr_entries_served), (2, 1));
    ucm.sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_both_listeners_and_drops_open_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let api = ucm.sim.addr();
    let admin: std::net::SocketAddr = ucm
        .sim
        .admin_url()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // An HTTPS connection that never finishes its handshake, and a kept-alive admin connection.
    let mut idle_api = TcpStream::connect(api).await.unwrap();
    let mut kept = TcpStream::connect(admin).await.unwrap();
    kept.write_all(b"GET /now HTTP/1.1\r\nHost: sim\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    ucm.sim.clone().shutdown().await;
    for conn in [&mut idle_api, &mut kept] {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "connection still open after shutdown");
    }
    assert!(TcpStream::connect(api).await.is_err());
    assert!(TcpStream::connect(admin).await.is_err());
}

// timeFilterType / tineFilterType: the window on the call's end.

/// Flat calls around the window 11:00..11:30 (each `(src, start, duration)`).
const AROUND_THE_WINDOW: [(&str, &str, u32); 5] = [
    ("2005", "2024-05-01 08:00:00", 10_800), // 3 h, ends 11:00:00 (the window's first second)
    ("2001", "2024-05-01 10:00:00", 4_200),  // started before the window, ends in it (11:10)
    ("2002", "2024-05-01 10:30:00", 600),    // ended before the window (10:40)
    ("2003", "2024-05-01 11:05:00", 60),     // in it from start to end (11:06)
    ("2004", "2024-05-01 11:25:00", 600),    // starts in it, ends after (11:35)
];

const WINDOW: (&str, &str) = ("2024-05-01T11:00:00", "2024-05-01T11:30:00");

fn in_window(filter: Option<(&str, &str)>) -> Value {
    let mut q = json!({"startTime": WINDOW.0, "endTime": WINDOW.1});
    if let Some((k, v)) = filter {
        q[k] = json!(v);
    }
    q
}

#[tokio::test]
async fn end_filter_quirk_puts_the_window_on_the_call_end() {
    use sim::EndFilter;
    let mut ucm = Ucm::start(quiet()).await;
    for (src, start, duration) in AROUND_THE_WINDOW {
        ucm.sim.add_call(flat(start, duration, src));
    }
    ucm.login().await;
    let on_start = ["2003", "2004"];
    let on_end = ["2005", "2001", "2003"];
    let time_end = Some(("timeFilterType", "End"));
    let tine_end = Some(("tineFilterType", "end"));
    let time_start = Some(("timeFilterType", "START"));
    let none: [&str; 0] = [];
    for (quirk, cases) in [
        (
            EndFilter::Honoured,
            vec![
                (None, &on_start[..]),
                (time_start, &on_start[..]),
                (time_end, &on_end[..]),
                (tine_end, &on_end[..]),
                (Some(("timeFilterType", "Finish")), &none[..]),
            ],
        ),
        (
            EndFilter::TypoOnly,
            vec![(time_end, &on_start[..]), (tine_end, &on_end[..])],
        ),
        (
            EndFilter::Ignored,
            vec![(time_end, &on_start[..]), (tine_end, &on_start[..])],
        ),
        (
            EndFilter::EmptyList,
            vec![
                (None, &on_start[..]),
                (time_end, &none[..]),
                (tine_end, &none[..]),
                (time_start, &none[..]),
            ],
        ),
    ] {
        ucm.sim.set_quirks(Quirks {
            end_filter: quirk,
            ..Quirks::default()
        });
        for (filter, expected) in cases {
            let page = ucm.cdr(in_window(filter)).await;
            assert_eq!(srcs(&page), expected, "{quirk:?} {filter:?}");
        }
    }
    let stats = ucm.sim.stats();
    // Honoured: 3 + 3, TypoOnly: 3.
    assert_eq!(stats.cdr_entries_end_filtered, 9);

    // Order and paging work on what the end filter selected.
    ucm.sim.set_quirks(Quirks {
        order: Order::EndAsc,
        ..Quirks::default()
    });
    let mut q = in_window(time_end);
    assert_eq!(srcs(&ucm.cdr(q.clone()).await), ["2005", "2003", "2001"]);
    q["numRecords"] = json!("2");
    q["offset"] = json!("1");
    assert_eq!(srcs(&ucm.cdr(q).await), ["2003", "2001"]);
    // Only endTime: every call that ended by then.
    let page = ucm
        .cdr(json!({"endTime": "2024-05-01T11:00:00", "timeFilterType": "End"}))
        .await;
    assert_eq!(srcs(&page), ["2002", "2005"]);
}

/// Over generated traffic, an end window holds exactly the calls whose latest leg ended in it,
/// however long ago they started.
#[tokio::test]
async fn end_filter_over_generated_traffic_matches_the_latest_leg_end() {
    let mut ucm = Ucm::start(SimConfig {
        calls_per_hour: 600.0,
        history: Duration::from_secs(8 * 3600),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let all = ucm.all_entries().await;
    let end_of = |e: &Value| -> String {
        sim_legs(e)
            .iter()
            .map(|l| leg_end(l).format("%Y-%m-%d %H:%M:%S").to_string())
            .max()
            .unwrap()
    };
    assert!(
        all.iter().any(|e| e.get("end") == Some(&json!(""))),
        "calls written without an end are among them"
    );
    let (from, to) = ("2024-05-01 10:00:00", "2024-05-01 10:30:00");
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| (from..=to).contains(&end_of(e).as_str()))
        .collect();
    assert!(
        expected
            .iter()
            .any(|e| starts(&json!({"cdr_root": [e]}))[0].as_str() < "2024-05-01 09:30:00"),
        "some call started long before the window"
    );
    let mut got = Vec::new();
    loop {
        let page = ucm
            .cdr(
                json!({"startTime": from, "endTime": to, "tineFilterType": "End",
                        "numRecords": "100", "offset": got.len().to_string()}),
            )
            .await;
        let rows = page["cdr_root"].as_array().unwrap().clone();
        let n = rows.len();
        got.extend(rows);
        if n < 100 {
            break;
        }
    }
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got.iter().collect::<Vec<_>>(), expected);
    assert_eq!(ucm.sim.stats().cdr_entries_end_filtered, got.len() as u64);
}

/// About 4 % of the generated calls fail before they are set up and are written without an
/// `end` or `answer`; an end filter on the written column never returns them, one on start +
/// duration does; switched off, they carry their end.
#[tokio::test]
async fn calls_that_failed_before_setup_are_written_without_an_end() {
    let config = SimConfig {
        calls_per_hour: 600.0,
        flat_traffic: true,
        history: Duration::from_secs(8 * 3600),
        ..quiet()
    };
    let mut ucm = Ucm::start(config.clone()).await;
    ucm.login().await;
    let all = ucm.all_entries().await;
    let endless: Vec<&Value> = all
        .iter()
        .filter(|e| e.get("end") == Some(&json!("")))
        .collect();
    let share = endless.len() as f64 / all.len() as f64;
    assert!(
        (0.02..0.07).contains(&share),
        "{} of {}",
        endless.len(),
        all.len()
    );
    for e in &endless {
        assert_eq!(
            (
                &e["answer"],
                &e["disposition"],
                &e["billsec"],
                &e["dstchannel"]
            ),
            (&json!(""), &json!("FAILED"), &json!("0"), &json!("")),
            "{e}"
        );
        let secs: i64 = e["duration"].as_str().unwrap().parse().unwrap();
        assert!((0..=8).contains(&secs), "{e}");
    }
    let ends = |e: &Value| leg_end(e).format("%Y-%m-%d %H:%M:%S").to_string();
    let (from, to) = ("2024-05-01 10:00:00", "2024-05-01 10:59:59");
    let body =
        json!({"startTime": from, "endTime": to, "timeFilterType": "End", "numRecords": "1000"});
    let in_window = endless
        .iter()
        .filter(|e| (from..=to).contains(&ends(e).as_str()))
        .count();
    let got = |page: &Value| {
        page["cdr_root"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("end") == Some(&json!("")))
            .count()
    };
    assert!(in_window > 5, "{in_window}");
    let page = ucm.cdr(body.clone()).await;
    assert!(
        page["cdr_root"].as_array().unwrap().len() < 1000,
        "one page"
    );
    assert_eq!(got(&page), in_window, "start + duration: returned");
    ucm.sim.set_quirks(Quirks {
        end_column: EndColumn::Written,
        ..Quirks::default()
    });
    assert_eq!(
        got(&ucm.cdr(body).await),
        0,
        "the written column: never returned"
    );

    let mut ended = Ucm::start(SimConfig {
        endless_failed: false,
        ..config
    })
    .await;
    ended.login().await;
    let whole = ended.all_entries().await;
    assert_eq!(whole.len(), all.len());
    assert!(whole
        .iter()
        .all(|e| e.get("main_cdr").is_some() || e["end"] != json!("")));
}

fn sim_legs(e: &Value) -> Vec<&Value> {
    match e.get("main_cdr") {
        Some(_) => e
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("sub_cdr_"))
            .map(|(_, v)| v)
            .collect(),
        None => vec![e],
    }
}

// Channel lists: the calls under way.

impl Ucm {
    /// Every row of a channel list at the sim's clock.
    async fn channels(&self, action: &str) -> Vec<Value> {
        let r = self
            .call(
                json!({"action": action, "cookie": self.cookie.clone().unwrap(),
                         "item_num": "1000", "page": "1"}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        r["response"]["channel"].as_array().unwrap().clone()
    }
}

fn berlin_unix(local: &str) -> i64 {
    use chrono::TimeZone;
    chrono_tz::Europe::Berlin
        .from_local_datetime(&t(local))
        .unwrap()
        .timestamp()
}

/// Rang 2000 unanswered for 20 s, then 2001 rang 10 s and talked 90 s: 11:59:50 to 12:01:50.
fn live_call() -> Value {
    let uid = format!("{}.7", berlin_unix("2024-05-01 11:59:50"));
    let leg = |start: &str, duration: u32, billsec: u32, ext: &str, n: u32| {
        json!({"AcctId": n.to_string(), "uniqueid": uid, "src": "030555", "dst": ext,
               "caller_name": "Oak Technology", "start": start, "duration": duration.to_string(),
               "billsec": billsec.to_string(),
               "disposition": if billsec > 0 { "ANSWERED" } else { "NO ANSWER" },
               "userfield": "Inbound", "src_trunk_name": "groff",
               "channel": "PJSIP/trunk_2-00000001", "channel_ext": "trunk_2", "dstchannel_ext": ext,
               "dstchannel": format!("PJSIP/{ext}-0000000{n}"), "lastapp": "Dial"})
    };
    json!({"cdr": "1714557590000001-030555",
           "main_cdr": {"src": "030555", "dst": "2000", "start": "2024-05-01 11:59:50",
                        "duration": "120", "billsec": "90", "uniqueid": uid},
           "sub_cdr_1": leg("2024-05-01 11:59:50", 20, 0, "2000", 2),
           "sub_cdr_2": leg("2024-05-01 12:00:10", 100, 90, "2001", 3)})
}

#[tokio::test]
async fn a_live_call_rings_is_bridged_and_leaves_the_lists() {
    let mut ucm = Ucm::start(SimConfig {
        timezone: chrono_tz::Europe::Berlin,
        ..quiet()
    })
    .await;
    let entry = live_call();
    ucm.sim.add_live_call(entry.clone());
    // The same call without channels: add_call leaves the lists alone.
    ucm.sim.add_call(flat("2024-05-01 11:59:00", 300, "2009"));
    ucm.login().await;
    let uid = entry["main_cdr"]["uniqueid"].as_str().unwrap().to_string();
    let seq_after = |n: u32, at: &str| format!("{}.{n}", berlin_unix(at));

    // 12:00:00: the caller rings, and so does 2000.
    assert!(ucm.channels("listBridgedChannels").await.is_empty());
    let unbridged = ucm.channels("listUnBridgedChannels").await;
    assert_eq!(
        unbridged,
        [
            json!({"channel": "PJSIP/trunk_2-00000001", "state": "Ring", "service": "normal",
                   "callernum": "030555", "callername": "Oak Technology", "connectednum": "2000",
                   "connectedname": "User 2000", "alloc_time": "2024-05-01 11:59:50", "uniqueid": uid}),
            json!({"channel": "PJSIP/2000-00000002", "state": "Ringing", "service": "normal",
                   "callernum": "030555", "callername": "Oak Technology", "connectednum": "2000",
                   "connectedname": "User 2000", "alloc_time": "2024-05-01 11:59:50",
                   "uniqueid": seq_after(8, "2024-05-01 11:59:50")}),
        ]
    );

    // 12:00:15: 2000 gave up, 2001 rings (its channel created at 12:00:10).
    ucm.sim.advance(Duration::from_secs(15));
    let unbridged = ucm.channels("listUnBridgedChannels").await;
    let summary: Vec<(&str, &str, &str)> = unbridged
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["alloc_time"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("PJSIP/trunk_2-00000001", "Ring", "2024-05-01 11:59:50"),
            ("PJSIP/2001-00000003", "Ringing", "2024-05-01 12:00:10"),
        ]
    );

    // 12:00:30: talking.
    ucm.sim.advance(Duration::from_secs(15));
    assert!(ucm.channels("listUnBridgedChannels").await.is_empty());
    assert_eq!(
        ucm.channels("listBridgedChannels").await,
        [
            json!({"channel1": "PJSIP/trunk_2-00000001", "channel2": "PJSIP/2001-00000003",
                "callerid1": "030555", "callerid2": "2001", "name1": "Oak Technology",
                "name2": "User 2001", "bridge_time": "2024-05-01 12:00:20",
                "uniqueid1": uid, "uniqueid2": seq_after(9, "2024-05-01 12:00:10")})
        ]
    );
    // Without uniqueids, for clients that must cope without them.
    ucm.sim.set_quirks(Quirks {
        no_channel_uniqueids: true,
        ..Quirks::default()
    });
    let bridged = ucm.channels("listBridgedChannels").await;
    assert!(bridged[0].get("uniqueid1").is_none() && bridged[0].get("uniqueid2").is_none());
    assert_eq!(bridged[0]["channel2"], "PJSIP/2001-00000003");
    ucm.sim.advance(Duration::from_secs(79));
    assert_eq!(
        ucm.cdr(json!({})).await["cdr_root"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // 12:01:50: over, and written.
    ucm.sim.advance(Duration::from_secs(1));
    assert!(ucm.channels("listBridgedChannels").await.is_empty());
    assert!(ucm.channels("listUnBridgedChannels").await.is_empty());
    assert_eq!(ucm.cdr(json!({})).await["cdr_root"], json!([entry]));
}

/// Calls under way at `now`, by CDR uniqueid, read from the entries once they are written:
/// (start, end, caller channel, every dstchannel).
fn under_way(
    entries: &[Value],
    now: &str,
) -> BTreeMap<String, (String, String, String, Vec<String>)> {
    entries
        .iter()
        .filter_map(|e| {
            let legs = sim_legs(e);
            let start = e.get("main_cdr").unwrap_or(e)["start"]
                .as_str()?
                .to_string();
            let end = legs
                .iter()
                .map(|l| l["end"].as_str().unwrap())
                .max()?
                .to_string();
            (start.as_str() <= now && now < end.as_str()).then(|| {
                let first = legs
                    .iter()
                    .find(|l| l["lastapp"] != "ForkCDR")
                    .unwrap_or(&legs[0]);
                (
                    legs[0]["uniqueid"].as_str().unwrap().to_string(),
                    (
                        start,
                        end,
                        first["channel"].as_str().unwrap().to_string(),
                        legs.iter()
                            .filter(|l| l["lastapp"] != "ForkCDR")
                            .map(|l| l["dstchannel"].as_str().unwrap().to_string())
                            .filter(|c| !c.is_empty())
                            .collect(),
                    ),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn channel_lists_show_exactly_the_calls_under_way() {
    let mut ucm = Ucm::start(SimConfig {
        timezone: chrono_tz::Europe::Berlin,
        calls_per_hour: 900.0,
        history: Duration::from_secs(3 * 3600),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let now = "2024-05-01 12:00:00";
    let bridged = ucm.channels("listBridgedChannels").await;
    let unbridged = ucm.channels("listUnBridgedChannels").await;
    assert!(!bridged.is_empty() && !unbridged.is_empty());

    // Once every call under way then has ended (the longest talk is 2 h), the CDRs say which.
    ucm.sim.advance(Duration::from_secs(3 * 3600));
    ucm.login().await;
    let entries = ucm.all_entries().await;
    let calls = under_way(&entries, now);
    assert!(calls.len() > 10, "{}", calls.len());

    let mut seen = std::collections::BTreeSet::new();
    for b in &bridged {
        let uid = b["uniqueid1"].as_str().unwrap();
        let (start, _, caller, dsts) = calls.get(uid).unwrap_or_else(|| panic!("{b}"));
        assert_eq!(b["channel1"], caller.as_str());
        assert!(dsts.iter().any(|d| b["channel2"] == d.as_str()), "{b}");
        assert!(b["bridge_time"].as_str().unwrap() <= now);
        let epoch: i64 = uid.split_once('.').unwrap().0.parse().unwrap();
        assert_eq!(epoch, berlin_unix(start), "{b}");
        assert_ne!(b["uniqueid2"], b["uniqueid1"]);
        seen.insert(uid.to_string());
    }
    for c in &unbridged {
        let channel = c["channel"].as_str().unwrap();
        let uid = c["uniqueid"].as_str().unwrap();
        if let Some((start, _, caller, _)) = calls.get(uid) {
            assert_eq!(channel, caller);
            assert_eq!(
                c["alloc_time"],
                start.as_str(),
                "the caller's channel: the call start"
            );
            assert!(
                ["Ring", "Up"].contains(&c["state"].as_str().unwrap()),
                "{c}"
            );
            seen.insert(uid.to_string());
        } else {
            assert_eq!(c["state"], "Ringing", "{c}");
            assert!(
                calls
                    .values()
                    .any(|(_, _, _, dsts)| dsts.iter().any(|d| d == channel)),
                "{c}"
            );
            assert!(c["alloc_time"].as_str().unwrap() <= now);
        }
    }
    assert_eq!(
        seen,
        calls.keys().cloned().collect(),
        "every call under way is listed"
    );
}

/// The same seed places the same calls: one simulator finds out when the first call under way
/// at noon ends, a second one is stopped just before and at that second.
#[tokio::test]
async fn a_call_leaves_the_channel_lists_when_it_ends() {
    let cfg = SimConfig {
        timezone: chrono_tz::Europe::Berlin,
        calls_per_hour: 900.0,
        history: Duration::from_secs(3 * 3600),
        ..quiet()
    };
    let now = "2024-05-01 12:00:00";
    let mut scout = Ucm::start(cfg.clone()).await;
    scout.sim.advance(Duration::from_secs(3 * 3600));
    scout.login().await;
    let calls = under_way(&scout.all_entries().await, now);
    let (uid, (_, end, _, _)) = calls
        .iter()
        .min_by_key(|(_, (_, end, _, _))| end.clone())
        .unwrap();
    let left = (t(end) - t(now)).num_seconds() as u64;
    assert!(left > 0);

    let mut ucm = Ucm::start(cfg).await;
    ucm.login().await;
    let listed = |bridged: &[Value], unbridged: &[Value]| {
        bridged.iter().any(|b| b["uniqueid1"] == uid.as_str())
            || unbridged.iter().any(|c| c["uniqueid"] == uid.as_str())
    };
    let written = |entries: &[Value]| {
        entries
            .iter()
            .any(|e| sim_legs(e)[0]["uniqueid"] == uid.as_str())
    };
    ucm.sim.advance(Duration::from_secs(left - 1));
    let (b, u) = (
        ucm.channels("listBridgedChannels").await,
        ucm.channels("listUnBridgedChannels").await,
    );
    assert!(listed(&b, &u), "one second before its end");
    assert!(!written(&ucm.all_entries().await));
    ucm.sim.advance(Duration::from_secs(1));
    let (b, u) = (
        ucm.channels("listBridgedChannels").await,
        ucm.channels("listUnBridgedChannels").await,
    );
    assert!(!listed(&b, &u), "at its end");
    assert!(written(&ucm.all_entries().await));
}

#[tokio::test]
async fn channel_actions_can_be_denied_and_count_their_rows() {
    let mut ucm = Ucm::start(quiet()).await;
    ucm.sim.add_live_call(live_call());
    ucm.login().await;
    let cookie = ucm.cookie.clone().unwrap();
    for action in ["listBridgedChannels", "listUnBridgedChannels"] {
        ucm.sim.add_fault(FaultRule {
            fault: Fault::Status(-47),
            action: Some(action.into()),
            times: None,
        });
        for other in ["listBridgedChannels", "listUnBridgedChannels"] {
            let r = ucm.call(json!({"action": other, "cookie": cookie})).await;
            let expected = if other == action { -47 } else { 0 };
            assert_eq!(r["status"], expected, "{action} denied, {other} asked: {r}");
        }
        ucm.sim.clear_faults();
    }
    let stats_before = ucm.sim.stats();
    assert_eq!(stats_before.entries_by_action["listUnBridgedChannels"], 2);
    assert_eq!(stats_before.entries_by_action["listBridgedChannels"], 0);

    // Paging: rows of the page shown are what counts.
    let r = ucm
        .call(
            json!({"action": "listUnBridgedChannels", "cookie": cookie, "item_num": 1, "page": 2}),
        )
        .await;
    assert_eq!(
        (
            &r["response"]["total_item"],
            &r["response"]["total_page"],
            &r["response"]["page"]
        ),
        (&json!(2), &json!(2), &json!(2))
    );
    assert_eq!(r["response"]["channel"][0]["state"], "Ringing");
    ucm.call(json!({"action": "listAccount", "cookie": cookie}))
        .await;
    ucm.call(json!({"action": "listVoIPTrunk", "cookie": cookie}))
        .await;
    ucm.call(json!({"action": "getSystemStatus", "cookie": cookie}))
        .await;
    ucm.sim.advance(Duration::from_secs(110));
    assert_eq!(
        ucm.cdr(json!({})).await["cdr_root"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let stats = ucm.sim.stats();
    assert_eq!(
        stats.entries_by_action,
        BTreeMap::from([
            ("cdrapi".to_string(), 1),
            ("listAccount".to_string(), 20),
            ("listBridgedChannels".to_string(), 0),
            ("listUnBridgedChannels".to_string(), 3),
            ("listVoIPTrunk".to_string(), 4),
        ])
    );
    assert_eq!(
        stats.bytes_by_action.values().sum::<u64>(),
        stats.bytes_sent
    );
    assert_eq!(
        stats.bytes_by_action.keys().collect::<Vec<_>>(),
        stats.requests.keys().collect::<Vec<_>>()
    );
    assert!(stats.bytes_by_action["getSystemStatus"] > 0);
}

#[tokio::test]
async fn admin_endpoint_reaches_the_new_quirks_and_live_calls() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let set = http
        .post(format!("{admin}/quirks"))
        .body(r#"{"end_filter": "typo-only", "no_channel_uniqueids": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let expected = Quirks {
        end_filter: sim::EndFilter::TypoOnly,
        no_channel_uniqueids: true,
        ..Quirks::default()
    };
    assert_eq!(body::<Quirks>(set).await, expected);
    let bad = http
        .post(format!("{admin}/quirks"))
        .body(r#"{"end_filter": "End"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("end_filter"));
    let added = http
        .post(format!("{admin}/calls?live=true"))
        .body(live_call().to_string())
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success());
    let refused = http
        .post(format!("{admin}/calls?live=maybe"))
        .body(live_call().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    ucm.login().await;
    let rows = ucm.channels("listUnBridgedChannels").await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get("uniqueid").is_none()));
    let page = ucm
        .cdr(json!({"endTime": "2024-05-01T12:01:50", "timeFilterType": "End"}))
        .await;
    assert_eq!(page, json!({"cdr_root": []}), "still under way");
    ucm.sim.shutdown().await;
}

// Live status: trunks, extensions, queues, system and storage.

impl Ucm {
    /// `action` with the session's cookie and `params`; the whole answer.
    async fn act(&self, action: &str, params: Value) -> Value {
        let mut request = params;
        request["action"] = json!(action);
        request["cookie"] = json!(self.cookie.clone().unwrap());
        self.call(request).await
    }

    /// `status` of every row of `listAccount`, by extension.
    async fn account_statuses(&self) -> BTreeMap<String, String> {
        let r = self
            .act("listAccount", json!({"item_num": "100", "page": "1"}))
            .await;
        r["response"]["account"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["extension"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// `status` of every member of queue 6500, by extension.
    async fn member_statuses(&self) -> BTreeMap<String, String> {
        self.members()
            .await
            .iter()
            .map(|m| {
                (
                    m["member_extension"].as_str().unwrap().to_string(),
                    m["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn members(&self) -> Vec<Value> {
        let r = self
            .act("getCallQueuesMemberMessage", json!({"extension": "6500"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        r["response"]["CallQueueMembersMessage"]["member"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// `getQueueCalling` rows of queue 6500 for `role`, in the default shape.
    async fn queue_calling(&self, role: Option<&str>) -> Vec<Value> {
        let mut params = json!({"extension": "6500"});
        if let Some(r) = role {
            params["role"] = json!(r);
        }
        let r = self.act("getQueueCalling", params).await;
        assert_eq!(r["status"], 0, "{r}");
        r["response"]["CallQueues"]["member"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn all_trunks(&self, params: Value) -> Value {
        let r = self.act("listAllTrunk", params).await;
        assert_eq!(r["status"], 0, "{r}");
        r["response"].clone()
    }

    /// The `listAccount` row of `ext`.
    async fn account(&self, ext: &str) -> Value {
        let r = self.act("listAccount", json!({"item_num": 100})).await;
        r["response"]["account"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["extension"] == ext)
            .unwrap()
            .clone()
    }

    async fn up_time(&self) -> (String, String) {
        let r = self.act("getSystemStatus", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");
        (
            r["response"]["up-time"].as_str().unwrap().to_string(),
            r["response"]["system-time"].as_str().unwrap().to_string(),
        )
    }
}

fn later(start: &str, secs: i64) -> String {
    (t(start) + chrono::Duration::seconds(secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A caller on trunk 1 holds in queue 6500 from `start` for `hold` s; 2004 rings from a second
/// later and answers when the hold ends, talking `talk` s (with `talk` 0 nobody answers: the
/// caller gives up); 2006 rings 10 s unanswered.
fn queue_call(start: &str, hold: i64, talk: i64, n: u32) -> Value {
    let caller = format!("03011100{n}");
    let channel = format!("PJSIP/trunk_1-0000010{n}");
    let leg = |at: &str,
               duration: i64,
               billsec: i64,
               lastapp: &str,
               ext: &str,
               dstchannel: &str| {
        json!({"src": caller, "dst": "6500", "start": at, "duration": duration.to_string(),
               "billsec": billsec.to_string(),
               "disposition": if lastapp == "Queue" || billsec > 0 { "ANSWERED" } else { "NO ANSWER" },
               "channel": channel, "dstchannel": dstchannel, "dstchannel_ext": ext,
               "lastapp": lastapp, "userfield": "Inbound", "src_trunk_name": "Telekom",
               "uniqueid": format!("1714564790.{n}")})
    };
    let rung = later(start, 1);
    json!({"cdr": format!("queue-{n}"),
           "main_cdr": {"src": caller, "dst": "6500", "start": start,
                        "duration": (hold + talk).to_string(), "billsec": (hold + talk).to_string()},
           "sub_cdr_1": leg(start, hold, hold, "Queue", "", ""),
           "sub_cdr_2": leg(&rung, hold - 1 + talk, talk, "Dial", "2004", &format!("PJSIP/2004-0000020{n}")),
           "sub_cdr_3": leg(&rung, 10, 0, "Dial", "2006", &format!("PJSIP/2006-0000030{n}"))})
}

fn members_registered(sim: &SimHandle) {
    for e in ["2004", "2006", "2007"] {
        sim.set_extension_registered(e, true);
    }
}

#[tokio::test]
async fn a_trunk_set_down_shows_in_list_all_trunk() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{admin}{path}")).send();
    ucm.login().await;

    let all = ucm.all_trunks(json!({})).await;
    let summary = |all: &Value| -> Vec<(String, String, String, String)> {
        all["trunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (s("trunk_name"), s("type"), s("status"), s("out_of_service"))
            })
            .collect()
    };
    let counts = |all: &Value| {
        [
            "available_trunk_number",
            "busy_trunk_number",
            "unavailable_trunk_number",
            "unmonitored_trunk_number",
        ]
        .map(|k| all[k].as_u64().unwrap())
    };
    let row = |name: &str, kind: &str, status: &str, oos: &str| {
        (
            name.to_string(),
            kind.to_string(),
            status.to_string(),
            oos.to_string(),
        )
    };
    assert_eq!(
        summary(&all),
        [
            row("Telekom", "register", "Registered", "no"),
            row("groff", "register", "Registered", "no"),
            row("Daisy", "register", "Registered", "no"),
            row("backup-sip", "peer", "OK", "no"),
        ]
    );
    assert_eq!(counts(&all), [4, 0, 0, 0]);
    assert_eq!(
        (&all["page"], &all["total_page"], &all["total_item"]),
        (&json!(1), &json!(1), &json!(4))
    );
    assert_eq!(all["trunks"][0]["trunk_index"], 1);
    assert_eq!(all["trunks"][0]["host"], "sip1.example.net");
    assert_eq!(all["trunks"][0]["username"], "49301000");

    // A call under way on groff (trunk_2) makes it busy.
    ucm.sim.add_live_call(live_call());
    assert_eq!(counts(&ucm.all_trunks(json!({})).await), [3, 1, 0, 0]);

    ucm.sim.set_trunk_status("Telekom", "Unregistered");
    assert!(post("/trunks/backup-sip?status=Unmonitored")
        .await
        .unwrap()
        .status()
        .is_success());
    assert!(post("/trunks/groff?out_of_service=yes")
        .await
        .unwrap()
        .status()
        .is_success());
    let all = ucm.all_trunks(json!({})).await;
    assert_eq!(
        summary(&all),
        [
            row("Telekom", "register", "Unregistered", "no"),
            row("groff", "register", "Registered", "yes"),
            row("Daisy", "register", "Registered", "no"),
            row("backup-sip", "peer", "Unmonitored", "no"),
        ]
    );
    assert_eq!(counts(&all), [1, 0, 2, 1]);
    let voip = ucm.act("listVoIPTrunk", json!({"item_num": 100})).await;
    assert_eq!(voip["response"]["voip_trunk"][1]["out_of_service"], "yes");

    // Paging shows one row; the totals stay over every trunk.
    let page = ucm.all_trunks(json!({"item_num": "1", "page": "2"})).await;
    assert_eq!(
        summary(&page),
        [row("groff", "register", "Registered", "yes")]
    );
    assert_eq!((&page["total_page"], &page["page"]), (&json!(4), &json!(2)));
    assert_eq!(counts(&page), [1, 0, 2, 1]);

    ucm.sim.set_trunk_out_of_service("groff", false);
    assert!(post("/trunks/Daisy?status=Request%20Sent")
        .await
        .unwrap()
        .status()
        .is_success());
    let all = ucm.all_trunks(json!({})).await;
    assert_eq!(all["trunks"][2]["status"], "Request Sent");
    assert_eq!(counts(&all), [0, 1, 2, 1]);

    // getSIPTrunk: the trunk by index, with its status only where the quirk says so.
    let one = ucm.act("getSIPTrunk", json!({"trunk": "1"})).await;
    assert_eq!(one["status"], 0);
    let trunk = &one["response"]["trunk"];
    assert_eq!(
        (
            &trunk["trunk_name"],
            &trunk["trunk_index"],
            &trunk["host"],
            &trunk["username"]
        ),
        (
            &json!("Telekom"),
            &json!(1),
            &json!("sip1.example.net"),
            &json!("49301000")
        )
    );
    assert!(trunk.get("status").is_none());
    ucm.sim.set_quirks(Quirks {
        sip_trunk_status: true,
        ..Quirks::default()
    });
    let one = ucm.act("getSIPTrunk", json!({"trunk": 1})).await;
    assert_eq!(one["response"]["trunk"]["status"], "Unregistered");
    let four = ucm.act("getSIPTrunk", json!({"trunk": "4"})).await;
    assert_eq!(four["response"]["trunk"]["status"], "Unmonitored");
    for bad in [json!({"trunk": "9"}), json!({})] {
        assert_eq!(
            ucm.act("getSIPTrunk", bad).await,
            json!({"response": {"error_msg": "Invalid parameters!"}, "status": -1})
        );
    }

    for (path, status) in [
        ("/trunks/nope?status=Registered", 400),
        ("/trunks/Telekom", 400),
        ("/trunks/Telekom?out_of_service=maybe", 400),
    ] {
        assert_eq!(post(path).await.unwrap().status(), status, "{path}");
    }
    let get = http
        .get(format!("{admin}/trunks/Telekom"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let stats = ucm.sim.stats();
    assert_eq!(stats.requests["listAllTrunk"], 5);
    assert_eq!(stats.entries_by_action["listAllTrunk"], 17);
    ucm.sim.shutdown().await;
}

#[tokio::test]
async fn a_queue_call_waits_is_answered_and_leaves() {
    let mut ucm = Ucm::start(quiet()).await;
    members_registered(&ucm.sim);
    // Waits 11:59:50-12:00:20, then 2004 talks until 12:01:20.
    ucm.sim
        .add_live_call(queue_call("2024-05-01 11:59:50", 30, 60, 1));
    // Waits from 11:59:55 and gives up at 12:00:35; 2004 rings all along.
    ucm.sim
        .add_live_call(queue_call("2024-05-01 11:59:55", 40, 0, 2));
    ucm.login().await;

    let queues = ucm.act("getCallQueuesMessage", json!({})).await;
    assert_eq!(
        queues,
        json!({"response": {"CallQueuesMessage": [{"extension": "6500", "queuename": "Support",
               "enable_agent_login": "no"}]}, "status": 0})
    );

    // 12:00:00: both wait, oldest first; 2004 and 2006 ring.
    assert_eq!(
        ucm.queue_calling(None).await,
        [
            json!({"position": "1", "callerid": "030111001", "callerchannel": "PJSIP/trunk_1-00000101",
                   "starttime": "2024-05-01 11:59:50"}),
            json!({"position": "2", "callerid": "030111002", "callerchannel": "PJSIP/trunk_1-00000102",
                   "starttime": "2024-05-01 11:59:55"}),
        ]
    );
    assert_eq!(ucm.queue_calling(Some("")).await.len(), 2);
    assert!(ucm.queue_calling(Some("answer")).await.is_empty());
    let members = ucm.members().await;
    assert_eq!(
        members[0],
        json!({"member_extension": "2004", "status": "Ringing", "answer": "0", "abandon": "0",
               "talktime": "0", "membership": "static"})
    );
    let accounts = ucm.account_statuses().await;
    let expected = BTreeMap::from([
        ("2004".to_string(), "Ringing".to_string()),
        ("2006".to_string(), "Ringing".to_string()),
        ("2007".to_string(), "Idle".to_string()),
    ]);
    assert_eq!(ucm.member_statuses().await, expected);
    for (e, s) in &expected {
        assert_eq!(&accounts[e], s, "{e}");
    }

    // 12:00:25: 2004 talks to the first caller and still rings for the second.
    ucm.sim.advance(Duration::from_secs(25));
    let waiting = ucm.queue_calling(None).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (&waiting[0]["position"], &waiting[0]["callerid"]),
        (&json!("1"), &json!("030111002"))
    );
    assert_eq!(
        ucm.queue_calling(Some("answer")).await,
        [
            json!({"callerchannel": "PJSIP/trunk_1-00000101", "calleechannel": "PJSIP/2004-00000201",
                "bridge_time": "2024-05-01 12:00:20", "channel1": "PJSIP/trunk_1-00000101"})
        ]
    );
    let bridged = ucm.channels("listBridgedChannels").await;
    assert_eq!(bridged.len(), 1);
    assert_eq!(bridged[0]["channel2"], "PJSIP/2004-00000201");
    for (casing, status) in [
        (sim::AccountCasing::Mixed, "InUse"),
        (sim::AccountCasing::Lower, "inuse"),
        (sim::AccountCasing::Compound, "InUse&Ringing"),
    ] {
        ucm.sim.set_quirks(Quirks {
            account_status_casing: casing,
            ..Quirks::default()
        });
        assert_eq!(ucm.account_statuses().await["2004"], status, "{casing:?}");
        assert_eq!(ucm.member_statuses().await["2004"], status, "{casing:?}");
    }
    ucm.sim.set_quirks(Quirks {
        queue_calling_array: true,
        ..Quirks::default()
    });
    let r = ucm
        .act(
            "getQueueCalling",
            json!({"extension": 6500, "role": "answer"}),
        )
        .await;
    assert_eq!(r["response"]["CallQueues"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["response"]["CallQueues"][0]["calleechannel"],
        "PJSIP/2004-00000201"
    );
    ucm.sim.set_quirks(Quirks::default());

    // 12:00:40: the second caller gave up, having rung 2004 and 2006.
    ucm.sim.advance(Duration::from_secs(15));
    assert!(ucm.queue_calling(None).await.is_empty());
    let stats: Vec<(String, String, String)> = ucm
        .members()
        .await
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap().to_string();
            (s("answer"), s("abandon"), s("talktime"))
        })
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        stats,
        [row("0", "1", "0"), row("0", "1", "0"), row("0", "0", "0")]
    );

    // 12:01:20: the first call ended; 2004 answered it and talked 60 s.
    ucm.sim.advance(Duration::from_secs(40));
    assert!(ucm.queue_calling(Some("answer")).await.is_empty());
    let members = ucm.members().await;
    assert_eq!(
        members[0],
        json!({"member_extension": "2004", "status": "Idle", "answer": "1", "abandon": "1",
               "talktime": "60", "membership": "static"})
    );
    assert_eq!(ucm.account_statuses().await["2004"], "Idle");

    // Statistics count since the last boot.
    ucm.sim.reboot();
    ucm.login().await;
    let members = ucm.members().await;
    assert!(members
        .iter()
        .all(|m| m["answer"] == "0" && m["abandon"] == "0" && m["talktime"] == "0"));

    for bad in [
        json!({"extension": "6501"}),
        json!({}),
        json!({"extension": "6500", "role": "boss"}),
    ] {
        assert_eq!(ucm.act("getQueueCalling", bad).await["status"], -1);
    }
    assert_eq!(
        ucm.act("getCallQueuesMemberMessage", json!({"extension": "7000"}))
            .await["status"],
        -1
    );
}

/// Over generated traffic, at several instants: every phone in a bridge is `InUse`, every phone
/// rung is `Ringing`, the queue members agree with `listAccount`, the busy trunks are those with
/// a channel, and the queue's callers are among the channels.
#[tokio::test]
async fn live_status_agrees_with_the_channel_lists() {
    let mut ucm = Ucm::start(SimConfig {
        calls_per_hour: 900.0,
        history: Duration::from_secs(3 * 3600),
        ..quiet()
    })
    .await;
    ucm.login().await;
    let phone = |channel: &str| -> Option<String> {
        let name = channel.strip_prefix("PJSIP/")?.split('-').next()?;
        let e: u32 = name.parse().ok()?;
        (2000..=2019).contains(&e).then(|| name.to_string())
    };
    let (mut talking_seen, mut ringing_seen, mut waiting_seen, mut answered_seen) = (0, 0, 0, 0);
    for _ in 0..12 {
        ucm.sim.advance(Duration::from_secs(97));
        let bridged = ucm.channels("listBridgedChannels").await;
        let unbridged = ucm.channels("listUnBridgedChannels").await;
        let r = ucm
            .act("listAccount", json!({"item_num": "100", "page": "1"}))
            .await;
        let accounts = r["response"]["account"].as_array().unwrap().clone();
        let talking: std::collections::BTreeSet<String> = bridged
            .iter()
            .flat_map(|b| [&b["channel1"], &b["channel2"]])
            .filter_map(|c| phone(c.as_str().unwrap()))
            .collect();
        let ringing: std::collections::BTreeSet<String> = unbridged
            .iter()
            .filter(|c| c["state"] == "Ringing")
            .filter_map(|c| phone(c["channel"].as_str().unwrap()))
            .collect();
        for a in &accounts {
            let e = a["extension"].as_str().unwrap();
            let expected = if a["addr"] == "-" {
                "Unavailable"
            } else if talking.contains(e) {
                talking_seen += 1;
                "InUse"
            } else if ringing.contains(e) {
                ringing_seen += 1;
                "Ringing"
            } else {
                "Idle"
            };
            assert_eq!(a["status"], expected, "{a}");
        }
        let statuses = ucm.account_statuses().await;
        for (m, s) in ucm.member_statuses().await {
            assert_eq!(statuses[&m], s, "member {m}");
        }

        let with_channel: std::collections::BTreeSet<String> = bridged
            .iter()
            .flat_map(|b| [b["channel1"].clone(), b["channel2"].clone()])
            .chain(unbridged.iter().map(|c| c["channel"].clone()))
            .filter_map(|c| {
                let name = c
                    .as_str()?
                    .strip_prefix("PJSIP/trunk_")?
                    .split('-')
                    .next()?;
                Some(name.to_string())
            })
            .collect();
        let trunks = ucm.all_trunks(json!({})).await;
        assert_eq!(
            trunks["busy_trunk_number"],
            with_channel.len() as u64,
            "{with_channel:?}"
        );
        assert_eq!(
            trunks["available_trunk_number"],
            4 - with_channel.len() as u64
        );

        for w in ucm.queue_calling(None).await {
            waiting_seen += 1;
            let caller = unbridged
                .iter()
                .find(|c| c["channel"] == w["callerchannel"])
                .unwrap_or_else(|| panic!("{w}"));
            assert_eq!(caller["service"], "queue", "{w}");
            // The caller's channel exists from the call's start; it joins the queue then, or
            // later after an IVR.
            assert!(
                caller["alloc_time"].as_str() <= w["starttime"].as_str(),
                "{caller} {w}"
            );
        }
        for a in ucm.queue_calling(Some("answer")).await {
            answered_seen += 1;
            assert!(
                bridged.iter().any(|b| b["channel1"] == a["callerchannel"]
                    && b["channel2"] == a["calleechannel"]
                    && b["bridge_time"] == a["bridge_time"]),
                "{a}"
            );
        }
    }
    assert!(
        talking_seen > 10 && ringing_seen > 0,
        "{talking_seen} {ringing_seen}"
    );
    assert!(
        waiting_seen + answered_seen > 0,
        "{waiting_seen} {answered_seen}"
    );
}

#[tokio::test]
async fn unregistered_extensions_are_unavailable() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{admin}{path}")).send();
    ucm.login().await;
    ucm.sim.set_extension_registered("2001", true);
    let a = ucm.account("2001").await;
    assert_eq!(
        (&a["status"], &a["out_of_service"]),
        (&json!("Idle"), &json!("no"))
    );
    assert_ne!(a["addr"], "-");

    ucm.sim.set_extension_registered("2001", false);
    ucm.sim.set_extension_out_of_service("2001", true);
    let a = ucm.account("2001").await;
    assert_eq!(
        (&a["status"], &a["out_of_service"], &a["addr"]),
        (&json!("Unavailable"), &json!("yes"), &json!("-"))
    );
    ucm.sim.set_quirks(Quirks {
        account_status_casing: sim::AccountCasing::Lower,
        ..Quirks::default()
    });
    assert_eq!(ucm.account("2001").await["status"], "unavailable");
    ucm.sim.set_quirks(Quirks::default());

    // The same through the admin endpoint; an unregistered phone in a call is Unavailable too.
    ucm.sim.add_live_call(live_call());
    ucm.sim.advance(Duration::from_secs(30));
    assert!(post("/extensions/2002?registered=true")
        .await
        .unwrap()
        .status()
        .is_success());
    assert!(post("/extensions/2001?registered=yes&out_of_service=no")
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(ucm.account("2001").await["status"], "InUse");
    assert!(post("/extensions/2001?registered=false")
        .await
        .unwrap()
        .status()
        .is_success());
    let a = ucm.account("2001").await;
    assert_eq!(
        (&a["status"], &a["out_of_service"]),
        (&json!("Unavailable"), &json!("no"))
    );
    for path in [
        "/extensions/9999?registered=false",
        "/extensions/2001?registered=maybe",
        "/extensions/2001",
    ] {
        assert_eq!(post(path).await.unwrap().status(), 400, "{path}");
    }
}

#[tokio::test]
async fn reboot_restarts_up_time_and_drops_sessions() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    ucm.sim.advance(Duration::from_secs(93_784));
    ucm.login().await;
    assert_eq!(ucm.up_time().await.0, "1 02:03:04");
    // A clock step is no reboot.
    ucm.sim.step_clock(chrono::Duration::seconds(-7200));
    assert_eq!(ucm.up_time().await.0, "1 02:03:04");

    ucm.sim.reboot();
    assert_eq!(ucm.act("getSystemStatus", json!({})).await["status"], -6);
    ucm.login().await;
    assert_eq!(ucm.up_time().await.0, "00:00:00");
    ucm.sim.advance(Duration::from_secs(5));
    assert_eq!(ucm.up_time().await.0, "00:00:05");

    let r = reqwest::Client::new()
        .post(format!("{admin}/reboot"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(ucm.act("getSystemStatus", json!({})).await["status"], -6);
    ucm.login().await;
    assert_eq!(ucm.up_time().await.0, "00:00:00");
    assert_eq!(ucm.sim.elapsed(), Duration::from_secs(93_789));
}

#[tokio::test]
async fn up_time_and_system_time_in_each_format() {
    use sim::{SystemTimeFormat, UptimeFormat};
    let mut ucm = Ucm::start(SimConfig {
        timezone: chrono_tz::Europe::Berlin,
        ..quiet()
    })
    .await;
    ucm.login().await;
    let formats = |uptime_format, system_time_format| Quirks {
        uptime_format,
        system_time_format,
        ..Quirks::default()
    };
    ucm.sim.advance(Duration::from_secs(5));
    for (uptime, system_time, expected) in [
        (
            UptimeFormat::Hms,
            SystemTimeFormat::DayFirst,
            ("00:00:05", "01-05-2024 12:00:05 UTC+02:00"),
        ),
        (
            UptimeFormat::Seconds,
            SystemTimeFormat::YearFirst,
            ("5", "2024-05-01 12:00:05 UTC+02:00"),
        ),
        (
            UptimeFormat::HoursOver24,
            SystemTimeFormat::DayFirst,
            ("00:00:05", "01-05-2024 12:00:05 UTC+02:00"),
        ),
        (
            UptimeFormat::DaysWord,
            SystemTimeFormat::DayFirst,
            ("0 day(s) 00:00:05", "01-05-2024 12:00:05 UTC+02:00"),
        ),
    ] {
        ucm.sim.set_quirks(formats(uptime, system_time));
        let (up, now) = ucm.up_time().await;
        assert_eq!((up.as_str(), now.as_str()), expected, "{uptime:?}");
    }
    ucm.sim.advance(Duration::from_secs(93_784 - 5));
    ucm.login().await;
    for (uptime, system_time, expected) in [
        (
            UptimeFormat::Hms,
            SystemTimeFormat::DayFirst,
            ("1 02:03:04", "02-05-2024 14:03:04 UTC+02:00"),
        ),
        (
            UptimeFormat::Seconds,
            SystemTimeFormat::DayFirst,
            ("93784", "02-05-2024 14:03:04 UTC+02:00"),
        ),
        (
            UptimeFormat::HoursOver24,
            SystemTimeFormat::YearFirst,
            ("26:03:04", "2024-05-02 14:03:04 UTC+02:00"),
        ),
        (
            UptimeFormat::DaysWord,
            SystemTimeFormat::YearFirst,
            ("1 day(s) 02:03:04", "2024-05-02 14:03:04 UTC+02:00"),
        ),
    ] {
        ucm.sim.set_quirks(formats(uptime, system_time));
        let (up, now) = ucm.up_time().await;
        assert_eq!((up.as_str(), now.as_str()), expected, "{uptime:?}");
    }
    let r = ucm.act("getSystemStatus", json!({})).await;
    assert!(r["response"]["up-time"].is_string());
}

#[tokio::test]
async fn each_status_action_can_be_refused_or_unknown() {
    let mut ucm = Ucm::start(quiet()).await;
    ucm.login().await;
    let actions = [
        ("listAllTrunk", json!({})),
        ("getSIPTrunk", json!({"trunk": "1"})),
        ("listAccount", json!({})),
        ("listVoIPTrunk", json!({})),
        ("getSystemStatus", json!({})),
        ("getSystemGeneralStatus", json!({})),
        ("getStorageUsage", json!({})),
        ("getCallQueuesMessage", json!({})),
        ("getQueueCalling", json!({"extension": "6500"})),
        (
            "getQueueCalling",
            json!({"extension": "6500", "role": "answer"}),
        ),
        ("getCallQueuesMemberMessage", json!({"extension": "6500"})),
        ("listBridgedChannels", json!({})),
        ("listUnBridgedChannels", json!({})),
    ];
    let unknown = ucm.act("getNoSuchThing", json!({})).await;
    assert_eq!(
        unknown,
        json!({"response": {"error_msg": "Invalid parameters!"}, "status": -1})
    );
    for (action, params) in &actions {
        assert_eq!(
            ucm.act(action, params.clone()).await["status"],
            0,
            "{action}"
        );
    }
    for (denied, _) in &actions {
        ucm.sim.add_fault(FaultRule {
            fault: Fault::Status(-47),
            action: Some(denied.to_string()),
            times: None,
        });
        for (action, params) in &actions {
            let r = ucm.act(action, params.clone()).await;
            if action == denied {
                assert_eq!(r, json!({"response": {}, "status": -47}), "{action}");
            } else {
                assert_eq!(r["status"], 0, "{denied} denied, {action} asked: {r}");
            }
        }
        ucm.sim.clear_faults();

        ucm.sim.set_quirks(Quirks {
            unknown_actions: vec![denied.to_string()],
            ..Quirks::default()
        });
        for (action, params) in &actions {
            let r = ucm.act(action, params.clone()).await;
            if action == denied {
                assert_eq!(r, unknown, "{action}");
            } else {
                assert_eq!(r["status"], 0, "{denied} unknown, {action} asked: {r}");
            }
        }
        // Unknown whatever the session, as any unknown action.
        assert_eq!(ucm.call(json!({"action": denied})).await, unknown);
        ucm.sim.set_quirks(Quirks::default());
    }
    let stats = ucm.sim.stats();
    let n = actions.len() as u64;
    assert_eq!(stats.requests["listAllTrunk"], 1 + 2 * n + 1);
    assert_eq!(stats.requests["getQueueCalling"], 2 * (1 + 2 * n) + 2);
    assert_eq!(stats.requests["getNoSuchThing"], 1);
}

#[tokio::test]
async fn storage_numbers_follow_set_storage_used() {
    let mut ucm = Ucm::start(SimConfig {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..quiet()
    })
    .await;
    let admin = ucm.sim.admin_url().unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{admin}{path}")).send();
    ucm.login().await;
    let disks = |r: &Value, key: &str| -> Vec<(String, String)> {
        r["response"]["body"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["diskname"].as_str().unwrap().to_string(),
                    d["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| {
        vec![
            ("cfg".to_string(), a.to_string()),
            ("data".to_string(), b.to_string()),
        ]
    };
    let r = ucm.act("getStorageUsage", json!({})).await;
    assert_eq!(r["status"], 0);
    assert_eq!(disks(&r, "disk-total"), pair("524288", "30408704"));
    assert_eq!(disks(&r, "disk-avail"), pair("404288", "27262976"));
    assert_eq!(disks(&r, "disk-usage"), pair("23%", "11%"));

    ucm.sim.set_storage_used("data", 30_408_704);
    assert!(post("/storage/cfg?used_kib=262144")
        .await
        .unwrap()
        .status()
        .is_success());
    let r = ucm.act("getStorageUsage", json!({})).await;
    assert_eq!(disks(&r, "disk-avail"), pair("262144", "0"));
    assert_eq!(disks(&r, "disk-usage"), pair("50%", "100%"));
    // More than the disk holds fills it.
    ucm.sim.set_storage_used("cfg", u64::MAX);
    let r = ucm.act("getStorageUsage", json!({})).await;
    assert_eq!(disks(&r, "disk-usage"), pair("100%", "100%"));
    assert_eq!(disks(&r, "disk-total"), pair("524288", "30408704"));
    for path in [
        "/storage/usb?used_kib=1",
        "/storage/cfg?used_kib=lots",
        "/storage/cfg",
    ] {
        assert_eq!(post(path).await.unwrap().status(), 400, "{path}");
    }
}
