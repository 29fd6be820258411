//! Reconciliation: the service's own counters, read from `/metrics` before
//! and after the run, must show exactly the requests the client completed,
//! per method, endpoint and status. Scrapes of `/metrics` (ours and
//! Prometheus's) are excluded; client-side timeouts are the only tolerance,
//! because the server may or may not have answered them.

use std::collections::{BTreeMap, BTreeSet};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::verify::check::Check;

/// `(method, endpoint, status_code)`.
pub type RouteKey = (String, String, String);

/// `http_requests_total` from one `/metrics` read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(pub BTreeMap<RouteKey, u64>);

impl Counts {
    /// Parses the exposition text of items-service.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut counts = BTreeMap::new();
        for line in text
            .lines()
            .filter(|line| line.starts_with("http_requests_total{"))
        {
            let (labels, value) = parse_sample(&line["http_requests_total".len()..])
                .ok_or_else(|| anyhow::anyhow!("cannot parse /metrics line {line:?}"))?;
            let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
            counts.insert(
                (label("method"), label("endpoint"), label("status_code")),
                value as u64,
            );
        }
        if counts.is_empty() {
            anyhow::bail!(
                "no http_requests_total series in /metrics: is the target items-service?"
            );
        }
        Ok(Self(counts))
    }

    /// What happened between `before` and `self`, without `/metrics` scrapes.
    pub fn since(&self, before: &Counts) -> BTreeMap<RouteKey, u64> {
        self.0
            .iter()
            .filter(|((_, endpoint, _), _)| endpoint != "/metrics")
            .map(|(key, after)| {
                (
                    key.clone(),
                    after - before.0.get(key).copied().unwrap_or(0).min(*after),
                )
            })
            .filter(|(_, delta)| *delta > 0)
            .collect()
    }
}

/// Parses `{name="value",...} 12` of the text exposition format. Label
/// values may contain `{`, `}` and escaped quotes (our `endpoint` label is
/// `/items/{key}`), which is why this does not use a regex-based parser.
fn parse_sample(text: &str) -> Option<(BTreeMap<String, String>, f64)> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{')?;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            let value = after.split_whitespace().next()?.parse().ok()?;
            return Some((labels, value));
        }
        let (name, after_name) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_name.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = &after_name[end + 1..];
    }
}

/// Reads `/metrics` of the target with a plain HTTP client.
pub async fn read(http: &reqwest::Client, target: &str) -> anyhow::Result<Counts> {
    Counts::parse(&read_text(http, target).await?)
}

/// The exposition text of the target's `/metrics` (kept whole by shards).
pub async fn read_text(http: &reqwest::Client, target: &str) -> anyhow::Result<String> {
    let url = format!("{target}/metrics");
    Ok(http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|err| anyhow::anyhow!("cannot read {url}: {err}"))?
        .text()
        .await?)
}

/// One row of the difference between server and client.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub key: RouteKey,
    pub server: u64,
    pub client: u64,
}

/// Compares per-route counts; returns the check and the mismatching rows.
pub fn reconcile(
    server: &BTreeMap<RouteKey, u64>,
    client: &BTreeMap<RouteKey, u64>,
    timeouts: u64,
) -> (Check, Vec<Mismatch>) {
    let keys: BTreeSet<&RouteKey> = server.keys().chain(client.keys()).collect();
    let mismatches: Vec<Mismatch> = keys
        .into_iter()
        .map(|key| Mismatch {
            key: key.clone(),
            server: server.get(key).copied().unwrap_or(0),
            client: client.get(key).copied().unwrap_or(0),
        })
        .filter(|row| row.server != row.client)
        .collect();
    let difference: u64 = mismatches
        .iter()
        .map(|row| row.server.abs_diff(row.client))
        .sum();
    let server_total: u64 = server.values().sum();
    let client_total: u64 = client.values().sum();
    let passed = difference <= timeouts && (timeouts > 0 || mismatches.is_empty());
    let check = Check::new(
        "reconcile server counts with client",
        format!("equal per route (± {timeouts} client timeouts)"),
        if mismatches.is_empty() {
            format!("equal: {server_total} requests")
        } else {
            format!(
                "server {server_total}, client {client_total}, {} routes differ by {difference}",
                mismatches.len()
            )
        },
        passed,
    );
    (check, mismatches)
}

/// The diff table shown when reconciliation fails.
pub fn mismatch_table(rows: &[Mismatch]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "method",
        "endpoint",
        "status",
        "server",
        "client",
        "server − client",
    ]);
    for row in rows {
        let (method, endpoint, status) = &row.key;
        table.add_row(vec![
            method.clone(),
            endpoint.clone(),
            status.clone(),
            row.server.to_string(),
            row.client.to_string(),
            format!("{:+}", row.server as i64 - row.client as i64),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE http_requests_total counter\nhttp_requests_total{endpoint=\"/\",method=\"GET\",status_code=\"200\"} 3\nhttp_requests_total{endpoint=\"/metrics\",method=\"GET\",status_code=\"200\"} 10\n";
    const AFTER: &str = "# TYPE http_requests_total counter\nhttp_requests_total{endpoint=\"/\",method=\"GET\",status_code=\"200\"} 8\nhttp_requests_total{endpoint=\"/metrics\",method=\"GET\",status_code=\"200\"} 14\nhttp_requests_total{endpoint=\"/items/{key}\",method=\"GET\",status_code=\"404\"} 2\n";

    fn key(method: &str, endpoint: &str, status: &str) -> RouteKey {
        (method.into(), endpoint.into(), status.into())
    }

    #[test]
    fn label_values_may_hold_braces_and_escapes() {
        let (labels, value) =
            parse_sample(r#"{endpoint="/items/{key}",note="a \"q\" b",method="GET"} 42"#).unwrap();
        assert_eq!(labels["endpoint"], "/items/{key}");
        assert_eq!(labels["note"], r#"a "q" b"#);
        assert_eq!(labels["method"], "GET");
        assert_eq!(value, 42.0);
        assert!(parse_sample("{broken=\"x} 1").is_none());
    }

    #[test]
    fn deltas_exclude_metrics_scrapes() {
        let delta = Counts::parse(AFTER)
            .unwrap()
            .since(&Counts::parse(BEFORE).unwrap());
        assert_eq!(
            delta,
            BTreeMap::from([
                (key("GET", "/", "200"), 5),
                (key("GET", "/items/{key}", "404"), 2)
            ])
        );
    }

    #[test]
    fn equal_counts_pass_and_any_difference_fails() {
        let server = BTreeMap::from([(key("GET", "/", "200"), 5)]);
        assert!(reconcile(&server, &server, 0).0.passed);
        let client = BTreeMap::from([(key("GET", "/", "200"), 4)]);
        let (check, rows) = reconcile(&server, &client, 0);
        assert!(!check.passed);
        assert_eq!(
            rows,
            vec![Mismatch {
                key: key("GET", "/", "200"),
                server: 5,
                client: 4
            }]
        );
        // One client timeout explains one missing response.
        assert!(reconcile(&server, &client, 1).0.passed);
    }
}
