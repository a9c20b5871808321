//! Loopback-only plain-HTTP control of a running simulator, for tests in other processes and
//! for poking at `ucm-sim` by hand (`curl -X POST localhost:PORT/advance?seconds=60`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDateTime;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::faults::FaultRule;
use super::quirks::Quirks;
use super::store::entry_times;
use super::traffic::BurstOutcome;
use super::Sim;

const ROUTES: &str = "GET /stats, GET /now, GET /truth?after=&until=[&started_from=], \
                      POST /faults, DELETE /faults, GET /quirks, POST /quirks, \
                      POST /advance?seconds=N, POST /step?seconds=±N, POST /calls[?visible=now][&live=true], \
                      POST /invalidate, POST /reboot, \
                      POST /bursts?outcome=missed|answered|abandoned&calls=N&seconds=S[&trunk=NAME], \
                      POST /trunks/NAME?status=S[&out_of_service=yes|no], \
                      POST /extensions/EXT?registered=true|false[&out_of_service=yes|no], \
                      POST /storage/PARTITION?used_kib=N\n";

const MAX_ADVANCE: u64 = 366 * 86_400;

/// Bodies are a fault rule, quirks or one `cdr_root` entry (a 12-leg call is about 15 kB).
const MAX_BODY: usize = 1 << 20;

pub async fn serve(listener: TcpListener, sim: Arc<Sim>, stop: CancellationToken) {
    // Dropped with this function: open connections end with the listener.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let sim = sim.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let sim = sim.clone();
                        async move { Ok::<_, Infallible>(route(&sim, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: String) -> Reply {
    let ct = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, ct)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn json_reply(v: Value) -> Reply {
    reply(StatusCode::OK, v.to_string())
}

fn ok() -> Reply {
    json_reply(json!({"ok": true}))
}

fn bad(msg: impl Into<String>) -> Reply {
    reply(StatusCode::BAD_REQUEST, msg.into() + "\n")
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn time_param(query: &str, name: &str) -> Result<NaiveDateTime, String> {
    let raw = param(query, name).ok_or_else(|| format!("missing {name}=YYYY-MM-DDTHH:MM:SS"))?;
    let raw = raw.replace("%3A", ":").replace("%3a", ":");
    NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| format!("{name}={raw:?}: {e}; expected YYYY-MM-DDTHH:MM:SS"))
}

fn seconds_param<T: std::str::FromStr>(query: &str, what: &str) -> Result<T, String> {
    let raw = param(query, "seconds").ok_or_else(|| format!("missing seconds={what}"))?;
    raw.parse()
        .map_err(|_| format!("seconds={raw:?}: expected {what}"))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(bad(format!(
            "body unreadable or larger than {MAX_BODY} bytes"
        ))),
    }
}

/// Quirks from a POST body, with an error that names the field at fault (serde's own message
/// names only the value).
fn read_quirks(body: &[u8]) -> Result<Quirks, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Value::Object(fields) = &v else {
        return Err("expected a JSON object such as {\"page_cap\": 100}".into());
    };
    for (k, field) in fields {
        let one = Value::Object([(k.clone(), field.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<Quirks>(one) {
            return Err(format!("{k}: {e}"));
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// `%XX` escapes and `+` of a query value or path segment (a status may hold a space).
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A yes/no switch, in the UCM's words or as a boolean.
fn switch_param(query: &str, name: &str) -> Result<Option<bool>, String> {
    match param(query, name) {
        None => Ok(None),
        Some("yes" | "true") => Ok(Some(true)),
        Some("no" | "false") => Ok(Some(false)),
        Some(v) => Err(format!("{name}={v:?}: yes or no (true or false)")),
    }
}

/// Sets trunk, extension or disk state from `POST /<kind>/<name>?…`.
fn set_state(sim: &Sim, path: &str, query: &str) -> Reply {
    let Some((kind, name)) = path.trim_start_matches('/').split_once('/') else {
        return bad(format!(
            "{path}: expected /{{trunks|extensions|storage}}/NAME"
        ));
    };
    let name = decode(name);
    let result = match kind {
        "trunks" => {
            let status = param(query, "status").map(decode);
            match switch_param(query, "out_of_service") {
                Ok(None) if status.is_none() => {
                    Err("give status=S and/or out_of_service=yes|no".to_string())
                }
                Ok(oos) => sim.set_trunk(&name, status.as_deref(), oos),
                Err(e) => Err(e),
            }
        }
        "extensions" => match (
            switch_param(query, "registered"),
            switch_param(query, "out_of_service"),
        ) {
            (Ok(None), Ok(None)) => {
                Err("give registered=true|false and/or out_of_service=yes|no".to_string())
            }
            (Ok(r), Ok(o)) => sim.set_extension(&name, r, o),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        _ => match param(query, "used_kib").map(str::parse::<u64>) {
            Some(Ok(kib)) => sim.set_storage_used(&name, kib),
            _ => Err("missing used_kib=N (a whole number of KiB)".to_string()),
        },
    };
    match result {
        Ok(()) => ok(),
        Err(e) => bad(e),
    }
}

/// `POST /bursts?outcome=…&calls=N&seconds=S[&trunk=NAME]`: see `SimHandle::burst`.
fn place_burst(sim: &Sim, query: &str) -> Reply {
    let outcome = match param(query, "outcome").map(str::parse::<BurstOutcome>) {
        Some(Ok(o)) => o,
        Some(Err(e)) => return bad(format!("outcome={e}")),
        None => return bad("missing outcome=missed|answered|abandoned"),
    };
    let calls = match param(query, "calls").map(str::parse::<u32>) {
        Some(Ok(n)) if n > 0 => n,
        _ => return bad("missing calls=N (a whole number above 0)"),
    };
    let over = match seconds_param::<u64>(query, "a whole number >= 0") {
        Ok(s) if s <= MAX_ADVANCE => Duration::from_secs(s),
        Ok(s) => return bad(format!("seconds={s}: at most {MAX_ADVANCE}")),
        Err(e) => return bad(e),
    };
    let trunk = param(query, "trunk").map(decode);
    match sim.burst((outcome, trunk.as_deref()), calls, over) {
        Ok(()) => ok(),
        Err(e) => bad(e),
    }
}

fn clock_text(sim: &Sim) -> Value {
    json!(sim.clock.now().format("%Y-%m-%dT%H:%M:%S").to_string())
}

fn is_state_path(path: &str) -> bool {
    ["/trunks/", "/extensions/", "/storage/"]
        .iter()
        .any(|p| path.len() > p.len() && path.starts_with(p))
}

/// The methods each path answers, for a 405 that names them.
fn allowed(path: &str) -> Option<&'static str> {
    Some(match path {
        "/stats" | "/now" | "/truth" => "GET",
        "/faults" => "POST, DELETE",
        "/quirks" => "GET, POST",
        "/advance" | "/step" | "/calls" | "/invalidate" | "/reboot" | "/bursts" => "POST",
        p if is_state_path(p) => "POST",
        _ => return None,
    })
}

async fn route(sim: &Sim, req: Request<Incoming>) -> Reply {
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (method, path.as_str()) {
        (Method::GET, "/stats") => {
            json_reply(serde_json::to_value(sim.stats().clone()).unwrap_or_default())
        }
        (Method::GET, "/now") => json_reply(clock_text(sim)),
        (Method::GET, "/truth") => {
            let (after, until) = match (time_param(&query, "after"), time_param(&query, "until")) {
                (Ok(a), Ok(u)) => (a, u),
                (Err(e), _) | (_, Err(e)) => return bad(e),
            };
            let started_from = match param(&query, "started_from") {
                None => None,
                Some(_) => match time_param(&query, "started_from") {
                    Ok(t) => Some(t),
                    Err(e) => return bad(e),
                },
            };
            json_reply(
                serde_json::to_value(sim.truth(after, until, started_from)).unwrap_or_default(),
            )
        }
        (Method::POST, "/faults") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match serde_json::from_slice::<FaultRule>(&body) {
                Ok(rule) => {
                    tracing::info!(target: "ucm_sim", ?rule, "fault added");
                    sim.faults.lock().expect("faults lock").add(rule);
                    ok()
                }
                Err(e) => bad(format!("not a FaultRule: {e}")),
            }
        }
        (Method::DELETE, "/faults") => {
            sim.faults.lock().expect("faults lock").clear();
            ok()
        }
        (Method::GET, "/quirks") => {
            json_reply(serde_json::to_value(sim.quirks()).unwrap_or_default())
        }
        (Method::POST, "/quirks") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let quirks = match read_quirks(&body) {
                Ok(q) => q,
                Err(e) => return bad(format!("not Quirks: {e}")),
            };
            if let Err(e) = quirks.check() {
                return bad(e);
            }
            sim.set_quirks(quirks);
            json_reply(serde_json::to_value(sim.quirks()).unwrap_or_default())
        }
        (Method::POST, "/advance") => match seconds_param::<u64>(&query, "a whole number >= 0") {
            Ok(s) if s > MAX_ADVANCE => bad(format!(
                "seconds={s}: at most {MAX_ADVANCE} (a year) per request, since every call of \
                 the span is generated at once"
            )),
            Ok(s) => {
                sim.clock.advance(Duration::from_secs(s));
                sim.generated_now();
                json_reply(clock_text(sim))
            }
            Err(e) => bad(e),
        },
        (Method::POST, "/step") => match seconds_param::<i64>(&query, "a whole number, ±") {
            Ok(s) => match chrono::Duration::try_seconds(s).map(|by| sim.step_clock(by)) {
                Some(Ok(())) => json_reply(clock_text(sim)),
                Some(Err(e)) => bad(e),
                None => bad(format!("seconds={s}: too large a step")),
            },
            Err(e) => bad(e),
        },
        (Method::POST, "/calls") => {
            let visible_now = match param(&query, "visible") {
                None => false,
                Some("now") => true,
                Some(v) => return bad(format!("visible={v:?}: the only value is now")),
            };
            let live = match param(&query, "live") {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => return bad(format!("live={v:?}: true or false")),
            };
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let entry = match serde_json::from_slice::<Value>(&body) {
                Ok(v) => v,
                Err(e) => return bad(format!("not JSON: {e}")),
            };
            if entry_times(&entry).is_none() {
                return bad(
                    "not a cdr_root entry: an object with a start (main_cdr.start for a \
                     grouped entry) as YYYY-MM-DD HH:MM:SS",
                );
            }
            sim.add_call(&entry, visible_now, live);
            ok()
        }
        (Method::POST, "/invalidate") => {
            sim.sessions.lock().expect("sessions lock").invalidate_all();
            ok()
        }
        (Method::POST, "/bursts") => place_burst(sim, &query),
        (Method::POST, "/reboot") => {
            sim.reboot();
            ok()
        }
        (Method::POST, p) if is_state_path(p) => set_state(sim, p, &query),
        (_, p) => match allowed(p) {
            Some(methods) => {
                let mut r = reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{p} answers {methods}\n"),
                );
                r.headers_mut()
                    .insert(ALLOW, methods.parse().expect("ASCII"));
                r
            }
            None => reply(StatusCode::NOT_FOUND, ROUTES.into()),
        },
    }
}
