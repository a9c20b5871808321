//! The UCM client: everything that speaks the UCM's HTTPS API, and nothing that counts.
//!
//! - `transport`: the HTTPS client and bounded reads;
//! - `tls`: the TLS trust of the clients, shared where it is the same;
//! - `envelope`: the answer envelope and the one status → error policy;
//! - `session`: login, cookie renewal and back-offs, reported through [`ClientEvents`];
//! - `login_guard`: the count of rejected logins shared by every process and target, so the UCM
//!   never blacklists the exporter;
//! - `budget`: the hard request budget of a target, per poll and per hour;
//! - `cdrapi`: how a page of CDRs is asked for and decoded;
//! - `lists`: the rows of the paged list actions.

pub mod budget;
pub mod cdrapi;
pub mod envelope;
pub mod lists;
pub mod login_guard;
mod session;
mod tls;
mod transport;

pub use envelope::{decode_envelope, is_refusal, Refusal};
pub use session::{ClientEvents, Session};
pub use tls::install_crypto_provider;
