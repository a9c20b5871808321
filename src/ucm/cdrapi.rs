//! The `cdrapi` action: how a page of records is asked for and what its answer may be
//! (docs/ucm-api.md §5).

use serde_json::{Map, Value};

use super::envelope::{looks_like_forbidden_page, Refusal};
use crate::cdr::{self, CdrResponse, DecodeError};
use crate::clock::{from_local_secs, LocalSecs};

/// Entries per page: the UCM's documented maximum.
pub const PAGE_SIZE: usize = 1000;

/// The request parameters of one page of records that started at or after `from` (the UCM's
/// local time).
pub fn page_params(from: LocalSecs, offset: usize, records: usize) -> Map<String, Value> {
    window_params(from, None, None, offset, records)
}

fn time_param(t: LocalSecs) -> Value {
    from_local_secs(t)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
        .into()
}

/// The request parameters of one page of a window `[from, to]`; with `end_filter` (the
/// parameter's spelling this UCM understands) the window applies to call end instead of start.
pub fn window_params(
    from: LocalSecs,
    to: Option<LocalSecs>,
    end_filter: Option<&str>,
    offset: usize,
    records: usize,
) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("format".into(), "json".into());
    params.insert("numRecords".into(), records.to_string().into());
    params.insert("offset".into(), offset.to_string().into());
    params.insert("startTime".into(), time_param(from));
    if let Some(to) = to {
        params.insert("endTime".into(), time_param(to));
    }
    if let Some(name) = end_filter {
        params.insert(name.into(), "End".into());
    }
    params
}

/// Decodes a cdrapi answer into its entries, or says why it is not a page of records.
pub fn decode_page(body: &[u8]) -> Result<Vec<cdr::Entry<'_>>, Refusal> {
    match cdr::parse_cdr_response(body) {
        Ok(CdrResponse::Records(e)) => Ok(e),
        Ok(CdrResponse::Status { status, error_msg }) => Err(Refusal::Status {
            status,
            message: error_msg,
        }),
        Err(DecodeError::Html { .. }) if looks_like_forbidden_page(body) => Err(Refusal::Html),
        Err(e) => Err(Refusal::Garbage(e.to_string())),
    }
}
