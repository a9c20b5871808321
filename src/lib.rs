//! ucm-exporter: a Prometheus exporter for the call detail records of Grandstream UCM IP PBXs.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that tests, the demo and the
//! benchmarks drive exactly the code that runs in production.
