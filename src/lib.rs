//! ucm-exporter: a Prometheus exporter for the call detail records of Grandstream UCM IP PBXs.
//!
//! The binary (`src/main.rs`) is a thin shell over this library, so that tests, the demo and
//! the benchmarks drive exactly the code that runs in production.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`--config.file`, `--web.listen-address`, `check`, `demo`).
//! - [`config`]: the YAML file and flags, validated into [`config::Settings`].
//! - [`clock`]: the one source of time; the host's in production, injected in tests.
//! - [`error`]: why a poll failed, and its [`error::Reason`] label.
//! - [`ucm`]: the UCM client (transport, envelope and status policy, session, request budget,
//!   `cdrapi`); it knows nothing of metrics.
//! - [`cdr`]: the CDR model: page decoding and classification into the metrics' labels.
//! - [`poll`]: one target's collection: the poll plan, the window modes, de-duplication,
//!   commit order.
//! - [`live`]: the live status collectors (trunks, extensions, active calls, queues, system).
//! - [`ucm_clock`]: the UCM's reported UTC offset and skew, and the zone its times are read in.
//! - [`state`]: the poll state and its file; [`series`]: the call series' values it keeps.
//! - [`metrics`]: per-target series; `exposition` encodes call series once per change and
//!   live-status series once per run; `histogram`: histograms that can be restored;
//!   `collector_health`: whether each live-status collector works.
//! - [`status`]: each target's readiness, last success and last error; [`journal`]: the log of
//!   each target's last poll, for `/probe?target=NAME&debug=true`.
//! - [`http`]: `/`, `/metrics`, `/probe`, `/sd`, `/-/healthy`, `/-/ready`, `/-/reload`; [`web_config`] secures it.
//! - [`exporter`]: wires targets, pollers and the HTTP server; one token stops them all.
//!   `fleet`: the running targets, one task group each; [`reload`]: SIGHUP and `/-/reload`
//!   move them to the configuration read again.
//! - [`backfill`]: `ucm-exporter backfill`, past calls as OpenMetrics for promtool.
//! - [`check`]: `ucm-exporter check`; `demo` (feature `demo`): the exporter against the
//!   built-in simulator (crate `ucm-sim`).

pub mod backfill;
pub mod cdr;
pub mod check;
pub mod cli;
pub mod clock;
mod collector_health;
pub mod config;
mod counter;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod exporter;
mod exposition;
mod fleet;
mod histogram;
mod http;
pub mod journal;
pub mod live;
pub mod metrics;
pub mod poll;
pub mod reload;
mod sd;
pub mod series;
pub mod state;
pub mod status;
pub mod ucm;
pub mod ucm_clock;
mod web_config;
