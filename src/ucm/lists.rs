//! The list actions (`listAccount`, `listAllTrunk`, the channel lists, …): the rows of every
//! page, in one place (docs/ucm-api.md §7.1).
//!
//! The UCM pages lists with `item_num` and `page` and says `total_page`, as a number or a
//! string. Rows come under a key per action (`account`, `trunks`, `channel`); a list that holds
//! one row may come as an object instead of an array, which is read as that one row.

use serde_json::{Map, Value};

use super::{decode_envelope, Session};
use crate::error::UcmError;

/// Rows asked for per page: large, so a list is one request.
pub const ITEMS_PER_PAGE: u64 = 1000;

/// Pages read at most: a list that claims more is cut there rather than read for ever.
pub const MAX_PAGES: u64 = 20;

/// A JSON number or a numeric string.
pub fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The rows under `key` of one answer: an array, a single object, or nothing. Borrowed, because
/// a fleet reads thousands of rows a minute and copying each tree was a tenth of its CPU.
pub fn rows_of<'a>(response: &'a Value, key: &str) -> &'a [Value] {
    match response.get(key) {
        Some(Value::Array(rows)) => rows,
        Some(o @ Value::Object(_)) => std::slice::from_ref(o),
        _ => &[],
    }
}

/// The rows under `key`, taken out of the answer.
fn take_rows(response: &mut Value, key: &str) -> Vec<Value> {
    match response.get_mut(key).map(Value::take) {
        Some(Value::Array(rows)) => rows,
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    }
}

/// Every row of `action`'s list under `key`, page by page; `params` are sent with each page.
pub async fn all_rows(
    session: &Session,
    action: &str,
    params: &Map<String, Value>,
    key: &str,
) -> Result<Vec<Value>, UcmError> {
    let mut rows = Vec::new();
    let mut page = 1u64;
    loop {
        let mut p = params.clone();
        p.insert("item_num".into(), ITEMS_PER_PAGE.to_string().into());
        p.insert("page".into(), page.to_string().into());
        let mut resp = session.call(action, p, |b| decode_envelope(b)).await?;
        rows.append(&mut take_rows(&mut resp, key));
        let total = number(resp.get("total_page")).unwrap_or(1);
        if page >= total || page >= MAX_PAGES {
            return Ok(rows);
        }
        page += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_and_numbers_in_every_shape() {
        assert_eq!(rows_of(&json!({"a": [{"x": 1}, {"x": 2}]}), "a").len(), 2);
        assert_eq!(rows_of(&json!({"a": {"x": 1}}), "a"), [json!({"x": 1})]);
        assert_eq!(
            take_rows(&mut json!({"a": [{"x": 1}, {"x": 2}]}), "a").len(),
            2
        );
        assert_eq!(
            take_rows(&mut json!({"a": {"x": 1}}), "a"),
            [json!({"x": 1})]
        );
        assert!(take_rows(&mut json!({"a": 1}), "a").is_empty());
        assert!(rows_of(&json!({"a": "none"}), "a").is_empty());
        assert!(rows_of(&json!({}), "a").is_empty());
        assert_eq!(number(Some(&json!(3))), Some(3));
        assert_eq!(number(Some(&json!(" 4 "))), Some(4));
        assert_eq!(number(Some(&json!("x"))), None);
        assert_eq!(number(None), None);
    }
}
