//! Process-wide counters, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Owns: the counter registry. Names follow `palisade_<noun>_<unit>_total`; labels are
//! small closed sets (a status code, an error kind, a priority), never ids or secrets.
//!
//! Must never: block for long (one short mutex section per update) or allocate per update
//! beyond the first time a series is seen.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

type Series = BTreeMap<(&'static str, Vec<(&'static str, String)>), u64>;

fn registry() -> &'static Mutex<Series> {
    static REGISTRY: OnceLock<Mutex<Series>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Add `by` to the counter `name` with `labels`.
pub fn count(name: &'static str, labels: &[(&'static str, &str)], by: u64) {
    let key = (
        name,
        labels
            .iter()
            .map(|(k, v)| (*k, (*v).to_string()))
            .collect::<Vec<_>>(),
    );
    let mut series = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *series.entry(key).or_insert(0) += by;
}

/// Add one to the counter `name` with `labels`.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    count(name, labels, 1);
}

/// The current value of one series (0 when never counted).
pub fn value(name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
    let series = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    series
        .iter()
        .filter(|((n, l), _)| {
            *n == name
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Every series in the Prometheus text exposition format.
pub fn render() -> String {
    let series = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), v) in series.iter() {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{escaped}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_with_escaped_labels() {
        inc("palisade_test_events_total", &[("kind", "a\"b")]);
        count("palisade_test_events_total", &[("kind", "a\"b")], 2);
        assert_eq!(value("palisade_test_events_total", &[("kind", "a\"b")]), 3);
        let text = render();
        assert!(text.contains("# TYPE palisade_test_events_total counter"));
        assert!(
            text.contains("palisade_test_events_total{kind=\"a\\\"b\"} 3"),
            "{text}"
        );
    }
}
