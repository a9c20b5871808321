//! The exporter's HTTP side: `/metrics`, `/probe`, the landing page and the health endpoints.
//!
//! A scrape only encodes what the pollers have already gathered, so it never waits on a UCM.
//! `/probe` takes a configured target name, never an address: nothing a scraper sends can make
//! the exporter contact another host or send credentials anywhere.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{encode, TargetMetrics};
use crate::poller::Ready;

pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that has not sent its request headers by then is dropped, so idle or slow
/// connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers larger than this are refused: the exporter only serves small GETs.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What the HTTP side shows of one target.
pub struct TargetView {
    pub name: String,
    pub metrics: Arc<TargetMetrics>,
    pub ready: Arc<Ready>,
}

pub struct App {
    pub exporter: Registry,
    pub targets: Vec<TargetView>,
    pub telemetry_path: String,
}

impl App {
    fn target(&self, name: &str) -> Option<&TargetView> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        gzip: bool,
    ) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served\n",
            );
        }
        if path == self.telemetry_path {
            let mut regs = vec![&self.exporter];
            if let [only] = self.targets.as_slice() {
                regs.push(&only.metrics.registry);
            }
            return metrics_response(encode(&regs), gzip);
        }
        match path {
            "/probe" => {
                let name = query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|kv| kv.strip_prefix("target="));
                match name {
                    None | Some("") => text(
                        StatusCode::BAD_REQUEST,
                        "missing parameter: target (a configured target name)\n",
                    ),
                    Some(n) => match self.target(n) {
                        Some(t) => metrics_response(encode(&[&t.metrics.registry]), gzip),
                        None => text(
                            StatusCode::BAD_REQUEST,
                            &format!("unknown target {:?}: not in the configuration\n", n),
                        ),
                    },
                }
            }
            "/" => html(self.landing_page()),
            "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
            "/-/ready" => {
                let waiting: Vec<&str> = self
                    .targets
                    .iter()
                    .filter(|t| !t.ready.get())
                    .map(|t| t.name.as_str())
                    .collect();
                if waiting.is_empty() {
                    text(StatusCode::OK, "Ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "Not ready: waiting for the first poll of {}\n",
                            waiting.join(", ")
                        ),
                    )
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn landing_page(&self) -> String {
        let mut probes = String::new();
        for t in &self.targets {
            let n = html_escape(&t.name);
            probes.push_str(&format!(
                "<li><a href=\"/probe?target={n}\">/probe?target={n}</a></li>\n"
            ));
        }
        format!(
            "<!DOCTYPE html>\n<html><head><title>UCM Exporter</title></head><body>\n\
             <h1>UCM Exporter</h1>\n<p>Prometheus exporter for Grandstream UCM call detail records, version {}.</p>\n\
             <ul>\n<li><a href=\"{tp}\">{tp}</a> (exporter metrics{single})</li>\n{probes}\
             <li><a href=\"/-/healthy\">/-/healthy</a></li>\n<li><a href=\"/-/ready\">/-/ready</a></li>\n</ul>\n</body></html>\n",
            env!("CARGO_PKG_VERSION"),
            tp = html_escape(&self.telemetry_path),
            single = if self.targets.len() == 1 { " and the one target's metrics" } else { "" },
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn metrics_response(body: Vec<u8>, gzip: bool) -> Response<Full<Bytes>> {
    let (body, encoded) = if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(&body).expect("writing to a Vec cannot fail");
        (enc.finish().expect("writing to a Vec cannot fail"), true)
    } else {
        (body, false)
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if encoded {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// True when the client accepts gzip (and did not give it q=0).
fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let q0 = it.any(|p| {
                    let p = p.trim();
                    p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
                });
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q0
            })
        })
}

/// Serves until `shutdown`, then stops accepting and lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let gzip = accepts_gzip(&req);
            let resp = app.handle(req.method(), req.uri().path(), req.uri().query(), gzip);
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not close within 5 s");
    }
    Ok(())
}
