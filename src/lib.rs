//! ucm-exporter: a Prometheus exporter for the call detail records of Grandstream UCM IP PBXs.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests, the demo and the
//! benchmarks drive exactly the code that runs in production.

pub mod cdr;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod exporter;
pub mod exposition;
pub mod http;
pub mod metrics;
pub mod poller;
pub mod session;
pub mod sim;
pub mod state;
pub mod web_config;
