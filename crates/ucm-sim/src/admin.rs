//! Loopback-only plain-HTTP control of a running simulator, for tests in other processes and
//! for poking at `ucm-sim` by hand (`curl -X POST localhost:PORT/advance?seconds=60`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDateTime;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::faults::FaultRule;
use super::Sim;

const ROUTES: &str = "GET /stats, GET /now, GET /truth?after=&until=, POST /faults, \
                      DELETE /faults, POST /advance?seconds=N, POST /invalidate\n";

pub async fn serve(listener: TcpListener, sim: Arc<Sim>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
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

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
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

fn bad(msg: impl Into<String>) -> Response<Full<Bytes>> {
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
    NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S").map_err(|e| format!("{name}: {e}"))
}

async fn route(sim: &Sim, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let json = |v: serde_json::Value| reply(StatusCode::OK, v.to_string());
    match (method, path.as_str()) {
        (Method::GET, "/stats") => {
            json(serde_json::to_value(sim.stats().clone()).unwrap_or_default())
        }
        (Method::GET, "/now") => json(serde_json::json!(sim
            .clock
            .now()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string())),
        (Method::GET, "/truth") => {
            let (after, until) = match (time_param(&query, "after"), time_param(&query, "until")) {
                (Ok(a), Ok(u)) => (a, u),
                (Err(e), _) | (_, Err(e)) => return bad(e),
            };
            json(serde_json::to_value(sim.truth(after, until)).unwrap_or_default())
        }
        (Method::POST, "/faults") => {
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return bad("body too large"),
            };
            match serde_json::from_slice::<FaultRule>(&body) {
                Ok(rule) => {
                    tracing::info!(target: "ucm_sim", ?rule, "fault added");
                    sim.faults.lock().expect("faults lock").add(rule);
                    json(serde_json::json!({"ok": true}))
                }
                Err(e) => bad(format!("not a FaultRule: {e}")),
            }
        }
        (Method::DELETE, "/faults") => {
            sim.faults.lock().expect("faults lock").clear();
            json(serde_json::json!({"ok": true}))
        }
        (Method::POST, "/advance") => {
            match param(&query, "seconds").and_then(|s| s.parse::<u64>().ok()) {
                Some(s) => {
                    sim.clock.advance(Duration::from_secs(s));
                    sim.generated_now();
                    json(serde_json::json!(sim
                        .clock
                        .now()
                        .format("%Y-%m-%dT%H:%M:%S")
                        .to_string()))
                }
                None => bad("missing seconds=N"),
            }
        }
        (Method::POST, "/invalidate") => {
            sim.sessions.lock().expect("sessions lock").invalidate_all();
            json(serde_json::json!({"ok": true}))
        }
        _ => reply(StatusCode::NOT_FOUND, ROUTES.into()),
    }
}
