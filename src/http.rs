//! The exporter's HTTP side: `/metrics`, `/probe`, `/sd`, the landing page, the health
//! endpoints and `/-/reload`.
//!
//! A scrape only encodes what the pollers have already gathered, so it never waits on a UCM; and
//! of that it encodes only the poll health and process metrics, the call series being encoded
//! once per change (see `exposition`), so concurrent scrapers do not queue behind each other.
//! `/probe` takes a configured target name, never an address: nothing a scraper sends can make
//! the exporter contact another host or send credentials anywhere.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE,
    HOST, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::exposition;
use crate::metrics::TargetMetrics;
use crate::status::TargetStatus;
use crate::web_config::WebSecurity;

pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that has not finished its TLS handshake, or sent its request headers, by then is
/// dropped (also while idle between requests), so idle or slow connections cannot pile up.
/// Prometheus sends its request at once and simply reconnects for the next scrape.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers larger than this are refused: the exporter only serves small GETs.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// More header lines than any scraper or browser sends.
const MAX_HEADERS: usize = 64;
/// Connections served at once. Far above what scrapers need, and well inside the usual 1024
/// file descriptor limit, which the pollers share.
pub const MAX_CONNECTIONS: usize = 512;
/// Even a busy connection is closed after this long: a client that stops reading its response
/// cannot hold a connection slot for ever.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What the HTTP side shows of one target.
#[derive(Clone)]
pub struct TargetView {
    pub name: String,
    pub metrics: Arc<TargetMetrics>,
    pub status: Arc<TargetStatus>,
}

/// The targets the HTTP side serves, in configuration order.
#[derive(Default)]
pub struct Targets(RwLock<Arc<Vec<TargetView>>>);

impl Targets {
    pub fn new(views: Vec<TargetView>) -> Self {
        Targets(RwLock::new(Arc::new(views)))
    }

    /// The current set; later reloads do not change it.
    pub fn snapshot(&self) -> Arc<Vec<TargetView>> {
        self.0.read().expect("not poisoned").clone()
    }

    pub(crate) fn replace(&self, views: Vec<TargetView>) {
        *self.0.write().expect("not poisoned") = Arc::new(views);
    }
}

/// Asks for a configuration reload and waits for its outcome; the reload itself is the
/// wiring's (`reload.rs`), which holds the other end.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<ReloadReply>);

/// Where the outcome of one reload goes: `Err` is the reason it was refused or failed.
pub type ReloadReply = oneshot::Sender<Result<(), String>>;

impl Reloader {
    /// A reloader and the receiving end its requests arrive at.
    pub fn channel() -> (Self, mpsc::Receiver<ReloadReply>) {
        let (tx, rx) = mpsc::channel(8);
        (Reloader(tx), rx)
    }

    /// Reloads; `Err` is the reason it was refused or failed, as the log and `/-/reload` say.
    pub async fn reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        if self.0.send(tx).await.is_err() {
            return Err("the exporter is shutting down".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the exporter is shutting down".into()))
    }
}

pub struct App {
    pub exporter: Registry,
    /// Swapped whole by a reload; each request reads one snapshot.
    pub targets: Arc<Targets>,
    pub telemetry_path: String,
    /// `None`: `/-/reload` is refused (nothing to reload from).
    pub reloader: Option<Reloader>,
}

impl App {
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
        let targets = self.targets.snapshot();
        let target = |name: &str| targets.iter().find(|t| t.name == name);
        if path == self.telemetry_path {
            let body = match targets.as_slice() {
                [only] => only.metrics.body(&[&self.exporter], gzip),
                _ => exposition::body(None, &exposition::gather(&[&self.exporter]), gzip),
            };
            return metrics_response(body, gzip);
        }
        match path {
            "/probe" => {
                let name = query_param(query, "target");
                let debug = query_param(query, "debug").as_deref() == Some("true");
                match name.as_deref() {
                    None | Some("") => text(
                        StatusCode::BAD_REQUEST,
                        "missing parameter: target (a configured target name)\n",
                    ),
                    Some(n) => match target(n) {
                        Some(t) if debug => text(StatusCode::OK, &debug_page(t)),
                        Some(t) => metrics_response(t.metrics.body(&[], gzip), gzip),
                        None => text(
                            StatusCode::BAD_REQUEST,
                            &format!("unknown target {:?}: not in the configuration\n", n),
                        ),
                    },
                }
            }
            "/" => html(landing_page(&self.telemetry_path, &targets)),
            "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
            "/-/ready" => {
                let waiting: Vec<&str> = targets
                    .iter()
                    .filter(|t| !t.status.is_ready())
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
}

/// One row per target with what an operator asks first: is it polled, and if not, why.
fn landing_page(telemetry_path: &str, targets: &[TargetView]) -> String {
    let mut rows = String::new();
    for t in targets {
        let s = t.status.snapshot();
        let name = html_escape(&t.name);
        let probe = format!("/probe?target={}", html_escape(&url_encode(&t.name)));
        let last_poll = match s.up {
            None => "none yet",
            Some(true) => "ok",
            Some(false) => "failed",
        };
        let success = s.last_success.map_or_else(|| "never".into(), timestamp);
        let error = match &s.last_error {
            None => "none".into(),
            Some(e) => format!(
                "<code>{}</code> at {}: {}",
                html_escape(e.reason.as_str()),
                timestamp(e.at),
                html_escape(&e.message)
            ),
        };
        let (mode, collectors) = t.metrics.summary();
        let mode = html_escape(mode.as_deref().unwrap_or("start"));
        let failing: Vec<&str> = collectors
            .iter()
            .filter(|(_, up)| !up)
            .map(|(c, _)| c.as_str())
            .collect();
        let live = match (collectors.len(), failing.is_empty()) {
            (0, _) => "off".to_string(),
            (n, true) => format!("{n} of {n} working"),
            (n, false) => format!(
                "{} of {n} working; not: {}",
                n - failing.len(),
                html_escape(&failing.join(", "))
            ),
        };
        rows.push_str(&format!(
                "<tr><td>{name}</td><td>{ready}</td><td>{last_poll}</td><td>{success}</td><td>{error}</td>\
                 <td>{mode}</td><td>{live}</td><td>{clock}</td>\
                 <td><a href=\"{probe}\">{probe}</a> (<a href=\"{probe}&amp;debug=true\">debug</a>)</td></tr>\n",
                ready = if t.status.is_ready() { "yes" } else { "no" },
                clock = html_escape(&t.status.clock()),
            ));
    }
    format!(
            "<!DOCTYPE html>\n<html><head><title>UCM Exporter</title>\n\
             <style>table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style>\n\
             </head><body>\n\
             <h1>UCM Exporter</h1>\n<p>Prometheus exporter for Grandstream UCM call detail records, version {}.</p>\n\
             <ul>\n<li><a href=\"{tp}\">{tp}</a> (exporter metrics{single})</li>\n\
             <li><a href=\"/sd\">/sd</a> (the targets as Prometheus HTTP service discovery)</li>\n\
             <li><a href=\"/-/healthy\">/-/healthy</a></li>\n<li><a href=\"/-/ready\">/-/ready</a></li>\n</ul>\n\
             <h2>Targets</h2>\n<p>Times are the exporter's clock, UTC. A target's debug page shows the log of its last poll.</p>\n\
             <table>\n<tr><th>Target</th><th>Ready</th><th>Last poll</th><th>Last success</th><th>Last error</th><th>CDR windows</th><th>Live status</th><th>UCM clock</th><th>Probe</th></tr>\n\
             {rows}</table>\n</body></html>\n",
            env!("CARGO_PKG_VERSION"),
            tp = html_escape(telemetry_path),
            single = if targets.len() == 1 { " and the one target's metrics" } else { "" },
        )
}

/// `/probe?target=NAME&debug=true`, after blackbox_exporter's: the log of the target's last
/// poll, then what `/probe` would return.
fn debug_page(t: &TargetView) -> String {
    let mut out = format!(
        "Target {}; log times are the host's clock, UTC.\n\n",
        t.name
    );
    t.status.journal().render(&mut out);
    out.push_str(&format!(
        "\nMetrics that /probe?target={} returns:\n",
        t.name
    ));
    out.push_str(&String::from_utf8_lossy(&t.metrics.body(&[], false)));
    out
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The first value of `key` in a query string, percent-decoded (`+` as a space, as forms send
/// it), so that the landing page's encoded links resolve whatever a target is called.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query value as a URL carries it: unreserved characters as they are, the rest as `%XX`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// `body` is already gzip-compressed when `gzip` (see [`exposition::body`]).
fn metrics_response(body: Vec<u8>, gzip: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
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

/// True when the request carries a body. The exporter serves only GET and HEAD, so a body is
/// refused unread rather than buffered: nothing a client sends can make the exporter hold it.
fn has_body(req: &Request<Incoming>) -> bool {
    use hyper::body::Body;
    !req.body().is_end_stream()
}

/// Answers one request: rate limit, basic auth, then the endpoints. Basic auth covers every path,
/// the landing page and health endpoints included, as in the exporter-toolkit.
async fn respond(
    app: Arc<App>,
    web: Option<Arc<WebSecurity>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let config = web.as_ref().map(|w| w.current());
    let mut resp = match (&web, &config) {
        (Some(w), _) if !w.admit() => text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
        (Some(w), Some(c)) if !w.authorize(c, req.headers().get(AUTHORIZATION)).await => {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        _ if has_body(&req) => {
            let mut r = text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted\n",
            );
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            r
        }
        _ if req.uri().path() == "/-/reload" => reload(&app, req.method()).await,
        _ if req.uri().path() == "/sd" && matches!(*req.method(), Method::GET | Method::HEAD) => {
            service_discovery(&app, req.headers().get(HOST))
        }
        _ => {
            let gzip = accepts_gzip(&req);
            app.handle(req.method(), req.uri().path(), req.uri().query(), gzip)
        }
    };
    if let Some(c) = &config {
        for (k, v) in &c.headers {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
    }
    resp
}

/// `POST /-/reload`, as in Prometheus: 200 once the running targets follow the configuration
/// read again, 500 with the reason when it was refused (the old targets keep running).
async fn reload(app: &App, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "/-/reload takes POST\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let outcome = match &app.reloader {
        Some(r) => r.reload().await,
        None => Err("this exporter cannot reload".into()),
    };
    match outcome {
        Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("failed to reload config: {e}\n"),
        ),
    }
}

/// `/sd`: the current targets, addressed as the scraper reached the exporter.
fn service_discovery(app: &App, host: Option<&HeaderValue>) -> Response<Full<Bytes>> {
    let Some(host) = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| crate::sd::valid_host(h))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "/sd needs a Host header naming this exporter (HOST:PORT)\n",
        );
    };
    let targets = app.targets.snapshot();
    let mut r = Response::new(Full::new(Bytes::from(crate::sd::document(
        host,
        targets.iter().map(|t| t.name.as_str()),
    ))));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Serves HTTP/1.1 on one accepted connection (plain TCP or TLS).
async fn serve_connection<I>(io: I, app: Arc<App>, web: Option<Arc<WebSecurity>>, watcher: Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (app, web) = (app.clone(), web.clone());
        async move { Ok::<_, Infallible>(respond(app, web, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(MAX_CONNECTION_LIFETIME, watcher.watch(conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        Err(_) => tracing::debug!("connection closed: open longer than its maximum lifetime"),
    }
}

/// Serves until `shutdown`, then stops accepting and lets open requests finish.
///
/// Slow or idle clients cannot starve scrapes: at most [`MAX_CONNECTIONS`] are open at once,
/// each must finish its TLS handshake and send its request headers within
/// [`HEADER_READ_TIMEOUT`] (also between requests on a kept-alive connection), and none lives
/// longer than [`MAX_CONNECTION_LIFETIME`], which bounds a client that stops reading its
/// response. At the limit the exporter stops accepting instead of dropping connections, so a
/// scrape waits in the kernel's queue, in arrival order, for the next free slot.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    web: Option<Arc<WebSecurity>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned_full = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !warned_full {
                    tracing::warn!(
                        limit = MAX_CONNECTIONS,
                        "connection limit reached; new connections wait until one closes"
                    );
                    warned_full = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                }
            }
        };
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
        if slots.available_permits() > MAX_CONNECTIONS / 2 {
            warned_full = false;
        }
        let tls = web.as_ref().and_then(|w| w.current().tls.clone());
        let (app, web, watcher) = (app.clone(), web.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, app, web, watcher).await,
                Some(cfg) => {
                    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, accept).await {
                        Ok(Ok(tls)) => serve_connection(tls, app, web, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UcmError;

    fn app(name: &str) -> App {
        App {
            exporter: Registry::new(),
            targets: Arc::new(Targets::new(vec![TargetView {
                name: name.into(),
                metrics: Arc::new(crate::metrics::TargetMetrics::new(10)),
                status: Arc::default(),
            }])),
            telemetry_path: "/metrics".into(),
            reloader: None,
        }
    }

    fn landing(app: &App) -> String {
        landing_page(&app.telemetry_path, &app.targets.snapshot())
    }

    #[test]
    fn the_landing_page_escapes_names_and_error_messages() {
        // Config validation keeps such names out; the page must not rely on it.
        let hostile = "<b onclick='x'>\"&";
        let app = app(hostile);
        let at = chrono::DateTime::from_timestamp(1_772_618_400, 0).unwrap();
        app.targets.snapshot()[0].status.failed(
            at,
            &UcmError::Protocol("<script>alert('pwned')</script> & more".into()),
        );
        let page = landing(&app);
        assert!(
            !page.contains("<script>") && !page.contains("<b "),
            "{page}"
        );
        assert!(page.contains(
            "<code>protocol</code> at 2026-03-04T10:00:00Z: unexpected answer from the UCM: \
             &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; more"
        ));
        assert!(page.contains("<td>&lt;b onclick=&#39;x&#39;&gt;&quot;&amp;</td>"));
        assert!(page.contains("<td>never</td>"));
        // The UCM's clock, as the target's poller last described it, escaped too.
        app.targets.snapshot()[0]
            .status
            .set_clock("CDR times read in UTC+05:00 (the UCM's) <now>".into());
        assert!(landing(&app).contains("<th>UCM clock</th>"));
        assert!(landing(&app)
            .contains("<td>CDR times read in UTC+05:00 (the UCM&#39;s) &lt;now&gt;</td>"));
        let link = "/probe?target=%3Cb%20onclick%3D%27x%27%3E%22%26";
        assert!(page.contains(&format!("href=\"{link}&amp;debug=true\"")));
        // The encoded link leads back to the target.
        assert_eq!(
            query_param(Some(&link["/probe?".len()..]), "target").as_deref(),
            Some(hostile)
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Some("debug=true&target=a%2Fb+c&x=%zz%4");
        assert_eq!(query_param(q, "target").as_deref(), Some("a/b c"));
        assert_eq!(query_param(q, "debug").as_deref(), Some("true"));
        assert_eq!(query_param(q, "x").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(q, "nope"), None);
        assert_eq!(query_param(Some("target"), "target").as_deref(), Some(""));
        assert_eq!(query_param(None, "target"), None);
        assert_eq!(url_encode("ok-name_1.~"), "ok-name_1.~");
    }

    #[test]
    fn debug_shows_the_journal_then_the_metrics() {
        let app = app("office");
        let get = |q: &str| app.handle(&Method::GET, "/probe", Some(q), false);
        let r = get("target=office&debug=true");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let t = &app.targets.snapshot()[0];
        t.status.poll_started();
        t.status.journal().push("logged in to the UCM".into());
        t.status.succeeded(chrono::Utc::now());
        let mut want = String::from("Target office; log times are the host's clock, UTC.\n\n");
        t.status.journal().render(&mut want);
        want.push_str("\nMetrics that /probe?target=office returns:\n");
        want.push_str(std::str::from_utf8(&t.metrics.text()).unwrap());
        assert!(want.contains("Log of the last poll:\nlogged in to the UCM\n"));
        assert_eq!(debug_page(t), want);
        // Anything but debug=true is a plain probe; an unknown target the same 400 as ever.
        let plain = get("target=office&debug=1");
        assert_eq!(plain.headers()[CONTENT_TYPE], TEXT_FORMAT);
        assert_eq!(
            get("target=branch&debug=true").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(get("debug=true").status(), StatusCode::BAD_REQUEST);
    }
}
