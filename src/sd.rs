//! `/sd`: the exporter's targets as Prometheus HTTP service discovery, so that a scrape config
//! names the exporter once and needs no list of UCMs and no relabelling.
//!
//! Each target is its own group: the scraper's address for the exporter, the `/probe` path and
//! the target's name as its `target` parameter. The `instance` label is the target's name,
//! not the exporter's address, so that a UCM moved to another exporter keeps its series.

use serde_json::{json, Value};

/// The discovery document for the targets `names`, reached at `host` (`HOST:PORT` as the
/// scraper sent it in its `Host` header).
pub fn document<'a>(host: &str, names: impl Iterator<Item = &'a str>) -> String {
    let groups: Vec<Value> = names
        .map(|name| {
            json!({
                "targets": [host],
                "labels": {
                    "__metrics_path__": "/probe",
                    "__param_target": name,
                    "instance": name,
                },
            })
        })
        .collect();
    let mut out = serde_json::to_string(&groups).expect("JSON values encode");
    out.push('\n');
    out
}

/// A `Host` header value usable as a scrape address: a host, optionally with a port, and
/// nothing a scraper could be sent elsewhere by (no path, user or spaces).
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_per_target_with_the_probe_path_and_its_name() {
        let doc: Value =
            serde_json::from_str(&document("exp-1:9736", ["a", "b c"].into_iter())).unwrap();
        assert_eq!(
            doc,
            json!([
                {"targets": ["exp-1:9736"], "labels": {"__metrics_path__": "/probe", "__param_target": "a", "instance": "a"}},
                {"targets": ["exp-1:9736"], "labels": {"__metrics_path__": "/probe", "__param_target": "b c", "instance": "b c"}},
            ])
        );
        assert_eq!(document("h:1", std::iter::empty()), "[]\n");
    }

    #[test]
    fn hosts_are_addresses_only() {
        for ok in [
            "exp-1:9736",
            "127.0.0.1:9736",
            "[::1]:9736",
            "exporter.example.com",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a/b", "user@host", "a b", "h:1?x"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
