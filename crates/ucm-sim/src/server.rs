//! The API listener: HTTPS (or plain HTTP) with hyper, `POST /api` dispatch, fault injection
//! and accounting of what was served.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::cdrapi::{self, Format, Query};
use super::faults::Effect;
use super::session::{CookieState, LoginOutcome};
use super::{pbx, Sim};

/// The page a UCM's web server shows a client whose IP is not permitted.
const FORBIDDEN_HTML: &str = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n\
    <center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

const JSON: &str = "application/json; charset=utf-8";

pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sim: Arc<Sim>,
    stop: CancellationToken,
) {
    // Dropped with this function: open connections end with the listener.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(target: "ucm_sim", error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (sim, tls) = (sim.clone(), tls.clone());
                conns.spawn(async move {
                    match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => {
                                let resumed = stream.get_ref().1.handshake_kind()
                                    == Some(rustls::HandshakeKind::Resumed);
                                sim.count_handshake(resumed);
                                connection(stream, peer.ip(), sim).await
                            }
                            Err(e) => tracing::debug!(target: "ucm_sim", %peer, error = %e, "TLS handshake failed"),
                        },
                        None => connection(tcp, peer.ip(), sim).await,
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection<I>(io: I, ip: IpAddr, sim: Arc<Sim>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(sim.clone(), ip, req));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(target: "ucm_sim", %ip, error = %e, "connection ended with an error");
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn envelope(status: i64, response: Value) -> String {
    json!({"response": response, "status": status}).to_string()
}

fn invalid() -> String {
    envelope(-1, json!({"error_msg": "Invalid parameters!"}))
}

/// Marks an answer that is not sent: the connection is closed instead (`Fault::Dropped`).
#[derive(Clone, Copy)]
struct DropConnection;

/// What hyper is told so that it closes the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    sim: Arc<Sim>,
    ip: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (resp, action) = route(&sim, ip, req).await;
    if resp.extensions().get::<DropConnection>().is_some() {
        return Err(Dropped);
    }
    let len = hyper::body::Body::size_hint(resp.body())
        .exact()
        .unwrap_or(0);
    let mut stats = sim.stats();
    stats.bytes_sent += len;
    *stats.bytes_by_action.entry(action).or_default() += len;
    Ok(resp)
}

const INVALID: &str = "(invalid)";

/// The answer, and the action it is accounted under (`(invalid)` when there is none).
async fn route(sim: &Sim, ip: IpAddr, req: Request<Incoming>) -> (Response<Full<Bytes>>, String) {
    let path = req.uri().path().to_string();
    if path != "/api" && path != "/api/v1" && !path.starts_with("/api/") {
        let not_found = respond(
            StatusCode::NOT_FOUND,
            "text/html",
            "<html><body><h1>404 Not Found</h1></body></html>",
        );
        return (not_found, INVALID.into());
    }
    let post = req.method() == Method::POST;
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return (respond(StatusCode::OK, JSON, invalid()), INVALID.into()),
    };
    let request = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|mut v| match v.get_mut("request").map(Value::take) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        });
    let action = request
        .as_ref()
        .and_then(|r| r.get("action"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (Some(request), Some(action), true, true) =
        (request, action, post, path == "/api" || path == "/api/v1")
    else {
        *sim.stats().requests.entry(INVALID.into()).or_default() += 1;
        return (respond(StatusCode::OK, JSON, invalid()), INVALID.into());
    };
    *sim.stats().requests.entry(action.clone()).or_default() += 1;
    tracing::debug!(target: "ucm_sim", %ip, %action, "request");

    let resp = answer(sim, ip, &action, &request).await;
    (resp, action)
}

async fn answer(
    sim: &Sim,
    ip: IpAddr,
    action: &str,
    request: &Map<String, Value>,
) -> Response<Full<Bytes>> {
    let effects = sim.faults.lock().expect("faults lock").take(action);
    let mut login_fails = false;
    let mut truncate = false;
    for e in effects {
        match e {
            Effect::Delay(d) => tokio::time::sleep(d).await,
            Effect::Http500 => return respond(StatusCode::INTERNAL_SERVER_ERROR, "text/html", ""),
            Effect::Html403 => return respond(StatusCode::FORBIDDEN, "text/html", FORBIDDEN_HTML),
            Effect::Garbage => {
                return respond(
                    StatusCode::OK,
                    JSON,
                    "<b>Fatal error</b>: Allowed memory size exhausted in <b>cgi</b>\n",
                )
            }
            Effect::Status(n) => return respond(StatusCode::OK, JSON, envelope(n, json!({}))),
            Effect::LoginFails => login_fails = true,
            Effect::Truncated => truncate = true,
            Effect::Dropped => {
                let mut resp = respond(StatusCode::OK, JSON, "");
                resp.extensions_mut().insert(DropConnection);
                return resp;
            }
        }
    }
    let (content_type, mut body) = dispatch(sim, ip, action, request, login_fails);
    if truncate {
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    respond(StatusCode::OK, content_type, body)
}

fn dispatch(
    sim: &Sim,
    ip: IpAddr,
    action: &str,
    req: &Map<String, Value>,
    login_fails: bool,
) -> (&'static str, String) {
    let text = |k: &str| req.get(k).and_then(Value::as_str);
    if sim
        .quirks
        .read()
        .expect("quirks lock")
        .unknown_actions
        .iter()
        .any(|a| a == action)
    {
        return (JSON, invalid());
    }
    match action {
        "challenge" => {
            let Some(user) = text("user") else {
                return (JSON, invalid());
            };
            let c = sim.sessions.lock().expect("sessions lock").challenge(user);
            return (JSON, envelope(0, json!({"challenge": c})));
        }
        "login" => {
            let (Some(user), Some(token)) = (text("user"), text("token")) else {
                return (JSON, invalid());
            };
            let now = sim.clock.steady_secs();
            let outcome = sim.sessions.lock().expect("sessions lock").login(
                ip,
                user,
                token,
                now,
                login_fails,
            );
            let mut stats = sim.stats();
            return match outcome {
                LoginOutcome::Ok(cookie) => {
                    stats.logins_ok += 1;
                    stats.sessions_created += 1;
                    (JSON, envelope(0, json!({"cookie": cookie})))
                }
                LoginOutcome::Denied { remain_num } => {
                    stats.logins_failed += 1;
                    tracing::info!(target: "ucm_sim", %ip, remain_num, "login denied");
                    (JSON, envelope(-37, json!({"remain_num": remain_num})))
                }
                LoginOutcome::Locked { remain_time } => {
                    stats.logins_failed += 1;
                    (JSON, envelope(-68, json!({"remain_time": remain_time})))
                }
            };
        }
        "logout"
        | "cdrapi"
        | "getSystemStatus"
        | "getSystemGeneralStatus"
        | "listAccount"
        | "listVoIPTrunk"
        | "listBridgedChannels"
        | "listUnBridgedChannels"
        | "listAllTrunk"
        | "getSIPTrunk"
        | "getStorageUsage"
        | "getCallQueuesMessage"
        | "getQueueCalling"
        | "getCallQueuesMemberMessage"
        | "listQueue"
        | "listRingGroup"
        | "listIVR" => {}
        _ => return (JSON, invalid()),
    }
    let Some(cookie) = text("cookie") else {
        return (JSON, envelope(-5, json!({})));
    };
    {
        let mut sessions = sim.sessions.lock().expect("sessions lock");
        let state = sessions.state(cookie, sim.clock.steady_secs());
        if state != CookieState::Live {
            drop(sessions);
            let silent = state == CookieState::Silenced
                || sim.quirks.read().expect("quirks lock").silent_expiry;
            if silent && action == "cdrapi" {
                sim.stats().silent_expiry_pages += 1;
                return empty_page(req);
            }
            return (JSON, envelope(-6, json!({})));
        }
        if action == "logout" {
            sessions.logout(cookie);
            return (JSON, envelope(0, json!({})));
        }
    }
    // The answer, and where its rows are for `entries_by_action` (None: it lists nothing).
    let (answer, rows_at): (Option<Value>, Option<&[&str]>) = match action {
        "cdrapi" => return cdr(sim, req),
        "getSystemStatus" => (Some(pbx::system_status(sim)), None),
        "getSystemGeneralStatus" => (Some(pbx::general_status(sim.cfg.firmware)), None),
        "getStorageUsage" => (Some(pbx::storage_usage(sim)), None),
        "getSIPTrunk" => (pbx::get_sip_trunk(sim, req), None),
        "listAccount" => (Some(pbx::list_account(sim, req)), Some(&["account"])),
        "listVoIPTrunk" => (Some(pbx::list_voip_trunk(sim, req)), Some(&["voip_trunk"])),
        "listAllTrunk" => (Some(pbx::list_all_trunk(sim, req)), Some(&["trunks"])),
        "listUnBridgedChannels" => (Some(pbx::list_unbridged(sim, req)), Some(&["channel"])),
        "listBridgedChannels" => (Some(pbx::list_bridged(sim, req)), Some(&["channel"])),
        "getCallQueuesMessage" => (Some(pbx::call_queues()), Some(&["CallQueuesMessage"])),
        "getQueueCalling" => (pbx::queue_calling(sim, req), Some(&["CallQueues"])),
        "listQueue" => (Some(pbx::list_queue(req)), Some(&["queue"])),
        "listRingGroup" => (Some(pbx::list_ring_group(req)), Some(&["ringgroup"])),
        "listIVR" => (Some(pbx::list_ivr(req)), Some(&["ivr"])),
        _ => (
            pbx::queue_members(sim, req),
            Some(&["CallQueueMembersMessage", "member"]),
        ),
    };
    let Some(answer) = answer else {
        return (JSON, invalid());
    };
    if let Some(path) = rows_at {
        let list = path.iter().fold(&answer["response"], |v, k| &v[*k]);
        // `CallQueues` is `{"member": [...]}` or, with `Quirks::queue_calling_array`, the list.
        let list = list.get("member").unwrap_or(list);
        let rows = list.as_array().map_or(0, Vec::len) as u64;
        *sim.stats()
            .entries_by_action
            .entry(action.into())
            .or_default() += rows;
    }
    (JSON, answer.to_string())
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => JSON,
        Format::Csv => "text/csv",
        Format::Xml => "text/xml",
    }
}

fn render(format: Format, entries: &[std::borrow::Cow<'_, str>]) -> String {
    match format {
        Format::Json => cdrapi::render_json(entries),
        Format::Csv => cdrapi::render_csv(entries),
        Format::Xml => cdrapi::render_xml(entries),
    }
}

/// What a dead session gets from cdrapi on a UCM that expires sessions silently: a list with
/// nothing in it, in the format asked for (JSON when the format is unreadable).
fn empty_page(req: &Map<String, Value>) -> (&'static str, String) {
    let format = match req.get("format").and_then(Value::as_str) {
        Some("xml") => Format::Xml,
        None | Some("csv") => Format::Csv,
        _ => Format::Json,
    };
    (content_type(format), render(format, &[]))
}

fn cdr(sim: &Sim, req: &Map<String, Value>) -> (&'static str, String) {
    let now = sim.generated_now();
    let quirks = sim.quirks();
    let query = Query::parse(
        req,
        sim.cfg.timezone,
        sim.clock.now(),
        sim.cfg.max_records,
        &quirks,
    );
    let late = quirks
        .late_legs_delay
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (content_type, body, served, partial) = match &query {
        None => (JSON, "{\"cdr_root\":[]}".to_string(), 0, 0),
        Some(q) => {
            let store = sim.store.read().expect("store lock");
            let page = q.page(&store, now.steady, quirks.order);
            let (texts, partial) = cdrapi::as_served(&page, now.steady, late);
            (
                content_type(q.format),
                render(q.format, &texts),
                page.len() as u64,
                partial,
            )
        }
    };
    {
        let mut stats = sim.stats();
        stats.cdr_entries_served += served;
        stats.partial_entries_served += partial;
        stats.cdrapi_pages += 1;
        *stats.entries_by_action.entry("cdrapi".into()).or_default() += served;
        if query.as_ref().is_some_and(|q| q.on_end) {
            stats.end_window_questions +=
                u64::from(query.as_ref().is_some_and(|q| q.end.is_some()));
            stats.cdr_entries_end_filtered += served;
        }
    }
    let after = sim.faults.lock().expect("faults lock").page_served();
    let mut sessions = sim.sessions.lock().expect("sessions lock");
    if after.invalidate {
        tracing::info!(target: "ucm_sim", "fault: invalidating all sessions after the last page");
        sessions.invalidate_all();
    }
    if after.silence {
        tracing::info!(target: "ucm_sim", "fault: sessions die silently after the last page");
        sessions.silence_all();
    }
    (content_type, body)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::{
        Fault, FaultRule, Quirks, SimConfig, SimHandle, HUNT_GROUP_NAME, IVR_NAME, QUEUE_NAME,
        RING_GROUP_NAME,
    };

    async fn post(sim: &SimHandle, request: Value) -> Value {
        let body = reqwest::Client::new()
            .post(format!("{}/api", sim.url()))
            .body(json!({ "request": request }).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    async fn cookie(sim: &SimHandle) -> String {
        let c = post(sim, json!({"action": "challenge", "user": "cdrapi"})).await;
        let challenge = c["response"]["challenge"].as_str().unwrap();
        let token = crate::token(challenge, "cdrapi-secret");
        let r = post(
            sim,
            json!({"action": "login", "user": "cdrapi", "token": token}),
        )
        .await;
        r["response"]["cookie"].as_str().unwrap().to_string()
    }

    /// The group name lists answer like the other list actions and share their refusals.
    #[tokio::test]
    async fn group_name_lists_page_and_can_be_refused_or_unknown() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = crate::start(SimConfig {
            tls: false,
            clock_speed: 0.0,
            calls_per_hour: 0.0,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let cookie = cookie(&sim).await;
        let act = |action: &str, extra: Value| {
            let mut r = json!({"action": action, "cookie": cookie});
            for (k, v) in extra.as_object().unwrap() {
                r[k] = v.clone();
            }
            r
        };
        let lists = [
            (
                "listQueue",
                "queue",
                vec![("6500", "queue_name", QUEUE_NAME)],
            ),
            (
                "listRingGroup",
                "ringgroup",
                vec![
                    ("6400", "ringgroup_name", RING_GROUP_NAME),
                    ("6401", "ringgroup_name", HUNT_GROUP_NAME),
                ],
            ),
            ("listIVR", "ivr", vec![("7000", "ivr_name", IVR_NAME)]),
        ];
        for (action, key, rows) in &lists {
            let r = post(&sim, act(action, json!({}))).await;
            assert_eq!(r["status"], 0, "{r}");
            let got: Vec<(String, String)> = r["response"][key]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    let name_key = rows[0].1;
                    (
                        row["extension"].as_str().unwrap().to_string(),
                        row[name_key].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = rows
                .iter()
                .map(|(e, _, n)| (e.to_string(), n.to_string()))
                .collect();
            assert_eq!(got, want, "{action}");
            assert_eq!(r["response"]["total_item"], rows.len() as u64);
            assert_eq!(r["response"]["total_page"], 1);
            assert_eq!(r["response"]["page"], 1);
        }
        assert_eq!(
            (QUEUE_NAME, RING_GROUP_NAME, HUNT_GROUP_NAME, IVR_NAME),
            ("Support", "Sales", "Hunt", "Main menu")
        );
        let second = post(
            &sim,
            act("listRingGroup", json!({"item_num": "1", "page": "2"})),
        )
        .await;
        assert_eq!(
            second["response"],
            json!({"ringgroup": [{"extension": "6401", "ringgroup_name": "Hunt",
                "strategy": "linear", "members": "2005,2006,2007,2008,2009,2010,2011,2012,2013,2014,2015,2016"}],
                "total_item": 2, "total_page": 2, "page": 2})
        );

        let unknown = json!({"response": {"error_msg": "Invalid parameters!"}, "status": -1});
        for (action, _, _) in &lists {
            assert_eq!(
                post(&sim, json!({ "action": action })).await,
                json!({"response": {}, "status": -5}),
                "{action} without a cookie"
            );
            sim.add_fault(FaultRule {
                fault: Fault::Status(-47),
                action: Some(action.to_string()),
                times: None,
            });
            for (other, _, _) in &lists {
                let r = post(&sim, act(other, json!({}))).await;
                let status = if other == action { -47 } else { 0 };
                assert_eq!(r["status"], status, "{action} denied, {other} asked");
            }
            sim.clear_faults();
            sim.set_quirks(Quirks {
                unknown_actions: vec![action.to_string()],
                ..Quirks::default()
            });
            assert_eq!(post(&sim, act(action, json!({}))).await, unknown);
            sim.set_quirks(Quirks::default());
        }
        let stats = sim.stats();
        // 1 + 3 asked while another was denied, + the second page of listRingGroup.
        assert_eq!(stats.entries_by_action["listQueue"], 1 + 2);
        assert_eq!(stats.entries_by_action["listRingGroup"], 2 + 2 * 2 + 1);
        assert_eq!(stats.entries_by_action["listIVR"], 1 + 2);
    }
}
