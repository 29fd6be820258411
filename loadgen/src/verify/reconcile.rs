//! Reconciliation: the service's own counters, read from `/metrics` before
//! and after the run, must show exactly the requests the client completed,
//! per method, endpoint and status, and exactly the cache lookups its
//! `get_hit`/`get_miss` requests made.
//!
//! Everything here is a function over plain data (counter snapshots and
//! client counts), so a single run and `loadgen merge` of many shards use
//! the same rules:
//! - probe and scrape routes (`/healthz`, `/readyz`, `/metrics`) are
//!   reported apart and never fail: Compose healthchecks and Prometheus
//!   hit them whatever loadgen does;
//! - a client timeout or a connection broken after the request was written
//!   is *uncertain*: the server may have answered it (counted under its
//!   status) or seen the client leave (counted as `499`). A server `499`
//!   matches one such request on the same `(method, endpoint)` exactly;
//!   the uncertain requests a `499` does not explain are that route's
//!   one-way tolerance: the server may count more than the client on that
//!   route by at most that many, never fewer, and never on another route.

use std::collections::{BTreeMap, BTreeSet};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::verify::check::Check;

/// `(method, endpoint, status_code)`.
pub type RouteKey = (String, String, String);
/// `(method, endpoint)`.
pub type Route = (String, String);

/// Routes that probes and scrapers hit behind loadgen's back.
pub const PROBE_ROUTES: [&str; 3] = ["/metrics", "/healthz", "/readyz"];
/// What the service counts when the client left before the answer.
pub const CLIENT_CLOSED: &str = "499";
/// The route whose 200/404 are cache hits/misses.
const LOOKUP: (&str, &str) = ("GET", "/items/{key}");

/// One `/metrics` read: `http_requests_total` and the cache counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: BTreeMap<RouteKey, u64>,
    pub cache_hits: Option<u64>,
    pub cache_misses: Option<u64>,
}

/// What happened between two reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub requests: BTreeMap<RouteKey, u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl Counts {
    /// Parses the exposition text of items-service.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut counts = Counts::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("http_requests_total{") {
                let (labels, value) = parse_sample(&format!("{{{rest}"))
                    .ok_or_else(|| anyhow::anyhow!("cannot parse /metrics line {line:?}"))?;
                let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
                counts.requests.insert(
                    (label("method"), label("endpoint"), label("status_code")),
                    value as u64,
                );
            } else if let Some(value) = unlabelled(line, "redis_app_cache_hit_total") {
                counts.cache_hits = Some(value);
            } else if let Some(value) = unlabelled(line, "redis_app_cache_miss_total") {
                counts.cache_misses = Some(value);
            }
        }
        if counts.requests.is_empty() {
            anyhow::bail!(
                "no http_requests_total series in /metrics: is the target items-service?"
            );
        }
        Ok(counts)
    }

    /// What happened between `before` and `self` (all routes).
    pub fn since(&self, before: &Counts) -> Delta {
        let minus = |after: u64, before: Option<u64>| after - before.unwrap_or(0).min(after);
        Delta {
            requests: self
                .requests
                .iter()
                .map(|(key, after)| {
                    (
                        key.clone(),
                        minus(*after, before.requests.get(key).copied()),
                    )
                })
                .filter(|(_, delta)| *delta > 0)
                .collect(),
            cache_hits: minus(self.cache_hits.unwrap_or(0), before.cache_hits),
            cache_misses: minus(self.cache_misses.unwrap_or(0), before.cache_misses),
        }
    }
}

/// `name 12` (a series without labels).
fn unlabelled(line: &str, name: &str) -> Option<u64> {
    let value = line.strip_prefix(name)?.strip_prefix(' ')?;
    value
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
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

/// The client's side of a run (or of the union of shards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientCounts {
    /// Responses per `(method, endpoint, status)`.
    pub responses: BTreeMap<RouteKey, u64>,
    /// Timeouts and connections broken after the request was written, per
    /// route: the server may have counted them under any status.
    pub uncertain: BTreeMap<Route, u64>,
    /// Of `GET /items/{key}`'s uncertain requests, the cache lookups
    /// (`get_hit`, `get_miss`; a `fault` never reads Redis).
    pub uncertain_lookups: u64,
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: RouteKey,
    pub server: u64,
    pub client: u64,
    /// Probe or scrape route: reported, never failed.
    pub probe: bool,
}

/// The verdicts of one reconciliation and the rows that differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub checks: Vec<Check>,
    pub rows: Vec<Row>,
    /// Why each failing route failed, for the notes.
    pub problems: Vec<String>,
}

fn is_probe(endpoint: &str) -> bool {
    PROBE_ROUTES.contains(&endpoint)
}

/// Compares the server's deltas with the client's counts (see the module
/// comment for the rules).
pub fn reconcile(server: &Delta, client: &ClientCounts) -> Reconciliation {
    let keys: BTreeSet<&RouteKey> = server
        .requests
        .keys()
        .chain(client.responses.keys())
        .collect();
    let get = |map: &BTreeMap<RouteKey, u64>, key: &RouteKey| map.get(key).copied().unwrap_or(0);
    let rows: Vec<Row> = keys
        .into_iter()
        .map(|key| Row {
            key: key.clone(),
            server: get(&server.requests, key),
            client: get(&client.responses, key),
            probe: is_probe(&key.1),
        })
        .collect();

    // Per route: the 499s the server counted, what the server counted
    // beyond the client, and any status where it counted fewer.
    #[derive(Default)]
    struct RouteTally {
        closed: u64,
        excess: u64,
        missing: u64,
    }
    let mut routes: BTreeMap<Route, RouteTally> = BTreeMap::new();
    for route in client.uncertain.keys() {
        routes.entry(route.clone()).or_default();
    }
    for row in rows.iter().filter(|row| !row.probe) {
        let tally = routes
            .entry((row.key.0.clone(), row.key.1.clone()))
            .or_default();
        if row.key.2 == CLIENT_CLOSED && row.client == 0 {
            tally.closed += row.server;
        } else if row.server >= row.client {
            tally.excess += row.server - row.client;
        } else {
            tally.missing += row.client - row.server;
        }
    }
    let mut problems = Vec::new();
    let (mut matched, mut tolerated) = (0, 0);
    for ((method, endpoint), tally) in &routes {
        let uncertain = client
            .uncertain
            .get(&(method.clone(), endpoint.clone()))
            .copied()
            .unwrap_or(0);
        if tally.missing > 0 {
            problems.push(format!(
                "{method} {endpoint}: the server counted {} fewer than the client",
                tally.missing
            ));
        }
        if tally.closed > uncertain {
            problems.push(format!(
                "{method} {endpoint}: {} {CLIENT_CLOSED}s but only {uncertain} client timeouts/broken connections",
                tally.closed
            ));
            continue;
        }
        let slack = uncertain - tally.closed;
        if tally.excess > slack {
            problems.push(format!(
                "{method} {endpoint}: the server counted {} more than the client, {slack} explained by unanswered requests",
                tally.excess
            ));
        }
        matched += tally.closed;
        tolerated += tally.excess.min(slack);
    }
    let user_rows = || rows.iter().filter(|row| !row.probe);
    let server_total: u64 = user_rows().map(|row| row.server).sum();
    let client_total: u64 = user_rows().map(|row| row.client).sum();
    let uncertain_total: u64 = client.uncertain.values().sum();
    let mut checks = vec![Check::new(
        "reconcile server counts with client",
        if uncertain_total == 0 {
            "equal per route and status".to_owned()
        } else {
            format!(
                "equal per route; {uncertain_total} unanswered requests may show as 499 or extra on their own route only"
            )
        },
        if problems.is_empty() {
            format!(
                "server {server_total}, client {client_total} ({matched} timeouts matched by 499, {tolerated} tolerated)"
            )
        } else {
            problems.join("; ")
        },
        problems.is_empty(),
    )];
    if let Some(check) = cache_check(server, client) {
        checks.push(check);
    }
    Reconciliation {
        checks,
        rows: rows
            .into_iter()
            .filter(|row| row.probe || row.server != row.client)
            .filter(|row| row.server + row.client > 0)
            .collect(),
        problems,
    }
}

/// Cache hits and misses against the client's 200s and 404s of
/// `GET /items/{key}`: exact, except that an unanswered lookup may have
/// been counted by the server (one-way). The slack is the unanswered
/// lookups, at most the route's uncertain requests the server did not
/// count as 499: a 499 is a handler dropped before it answered, i.e.
/// before it counted a hit or miss (and `fault` requests never do).
fn cache_check(server: &Delta, client: &ClientCounts) -> Option<Check> {
    let lookup = |status: &str| {
        client
            .responses
            .get(&(LOOKUP.0.into(), LOOKUP.1.into(), status.into()))
            .copied()
            .unwrap_or(0)
    };
    let (hits, misses) = (lookup("200"), lookup("404"));
    if hits + misses == 0 && server.cache_hits + server.cache_misses == 0 {
        return None;
    }
    let route_uncertain = client
        .uncertain
        .get(&(LOOKUP.0.into(), LOOKUP.1.into()))
        .copied()
        .unwrap_or(0);
    let closed = server
        .requests
        .get(&(LOOKUP.0.into(), LOOKUP.1.into(), CLIENT_CLOSED.into()))
        .copied()
        .unwrap_or(0);
    let slack = client
        .uncertain_lookups
        .min(route_uncertain.saturating_sub(closed));
    let extra = |server: u64, client: u64| server.checked_sub(client);
    let passed = match (
        extra(server.cache_hits, hits),
        extra(server.cache_misses, misses),
    ) {
        (Some(h), Some(m)) => h + m <= slack,
        _ => false,
    };
    Some(Check::new(
        "reconcile cache hits/misses with client",
        if slack == 0 {
            "hits = GET 200s, misses = GET 404s".to_owned()
        } else {
            format!("hits = GET 200s, misses = GET 404s (server + ≤ {slack} unanswered)")
        },
        format!(
            "server {}/{} vs client {hits}/{misses}",
            server.cache_hits, server.cache_misses
        ),
        passed,
    ))
}

/// The table of differing (and probe) rows shown under the checks.
pub fn mismatch_table(rows: &[Row]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "method",
        "endpoint",
        "status",
        "server",
        "client",
        "server − client",
        "",
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
            if row.probe {
                "probe/scrape, not reconciled"
            } else if status == CLIENT_CLOSED && row.client == 0 {
                "client left: matches timeouts"
            } else {
                ""
            }
            .to_owned(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE http_requests_total counter\nhttp_requests_total{endpoint=\"/\",method=\"GET\",status_code=\"200\"} 3\nhttp_requests_total{endpoint=\"/metrics\",method=\"GET\",status_code=\"200\"} 10\nredis_app_cache_hit_total 4\nredis_app_cache_miss_total 1\n";
    const AFTER: &str = "# TYPE http_requests_total counter\nhttp_requests_total{endpoint=\"/\",method=\"GET\",status_code=\"200\"} 8\nhttp_requests_total{endpoint=\"/metrics\",method=\"GET\",status_code=\"200\"} 14\nhttp_requests_total{endpoint=\"/items/{key}\",method=\"GET\",status_code=\"404\"} 2\nhttp_requests_total{endpoint=\"/items/{key}\",method=\"GET\",status_code=\"499\"} 0\nredis_app_cache_hit_total 4\nredis_app_cache_miss_total 3\n";

    fn key(method: &str, endpoint: &str, status: &str) -> RouteKey {
        (method.into(), endpoint.into(), status.into())
    }

    fn route(method: &str, endpoint: &str) -> Route {
        (method.into(), endpoint.into())
    }

    fn delta(rows: &[(&str, &str, &str, u64)]) -> Delta {
        Delta {
            requests: rows.iter().map(|(m, e, s, n)| (key(m, e, s), *n)).collect(),
            ..Delta::default()
        }
    }

    fn client(rows: &[(&str, &str, &str, u64)], uncertain: &[(&str, &str, u64)]) -> ClientCounts {
        ClientCounts {
            responses: delta(rows).requests,
            uncertain: uncertain
                .iter()
                .map(|(m, e, n)| (route(m, e), *n))
                .collect(),
            uncertain_lookups: uncertain
                .iter()
                .filter(|(m, e, _)| (*m, *e) == LOOKUP)
                .map(|(_, _, n)| n)
                .sum(),
        }
    }

    fn passed(server: &Delta, client: &ClientCounts) -> bool {
        reconcile(server, client).checks.iter().all(|c| c.passed)
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
    fn deltas_of_requests_and_cache_counters() {
        let delta = Counts::parse(AFTER)
            .unwrap()
            .since(&Counts::parse(BEFORE).unwrap());
        assert_eq!(
            delta.requests,
            BTreeMap::from([
                (key("GET", "/", "200"), 5),
                (key("GET", "/items/{key}", "404"), 2),
                (key("GET", "/metrics", "200"), 4),
            ])
        );
        assert_eq!((delta.cache_hits, delta.cache_misses), (0, 2));
    }

    #[test]
    fn equal_counts_pass_and_any_difference_fails() {
        let server = delta(&[("GET", "/", "200", 5)]);
        assert!(passed(&server, &client(&[("GET", "/", "200", 5)], &[])));
        let fewer = client(&[("GET", "/", "200", 4)], &[]);
        let result = reconcile(&server, &fewer);
        assert!(!result.checks[0].passed);
        assert_eq!(
            result.rows,
            vec![Row {
                key: key("GET", "/", "200"),
                server: 5,
                client: 4,
                probe: false
            }]
        );
        // One timeout on that route explains one extra server count.
        assert!(passed(
            &server,
            &client(&[("GET", "/", "200", 4)], &[("GET", "/", 1)])
        ));
    }

    #[test]
    fn tolerance_is_per_route_and_one_way() {
        // Timeouts on GET /items/{key} do not excuse foreign GET / traffic.
        let server = delta(&[("GET", "/", "200", 7), ("GET", "/items/{key}", "200", 10)]);
        let sent = client(
            &[("GET", "/", "200", 5), ("GET", "/items/{key}", "200", 10)],
            &[("GET", "/items/{key}", 5)],
        );
        let result = reconcile(&server, &sent);
        assert!(!result.checks[0].passed);
        assert!(
            result.problems[0].starts_with("GET /: "),
            "{:?}",
            result.problems
        );
        // An undercounting server never passes, whatever the timeouts.
        let under = delta(&[("GET", "/items/{key}", "200", 8)]);
        let sent = client(
            &[("GET", "/items/{key}", "200", 10)],
            &[("GET", "/items/{key}", 5)],
        );
        let result = reconcile(&under, &sent);
        assert!(!result.checks[0].passed);
        assert!(
            result.problems[0].contains("2 fewer"),
            "{:?}",
            result.problems
        );
    }

    #[test]
    fn a_499_matches_a_client_timeout_on_the_same_route_exactly() {
        let text = "http_requests_total{endpoint=\"/items/{key}\",method=\"GET\",status_code=\"200\"} 10\n\
                    http_requests_total{endpoint=\"/items/{key}\",method=\"GET\",status_code=\"499\"} 3\n\
                    http_requests_total{endpoint=\"/\",method=\"GET\",status_code=\"499\"} 0\n";
        let server = Counts::parse(text).unwrap().since(&Counts::default());
        let timeouts = |n| {
            client(
                &[("GET", "/items/{key}", "200", 10)],
                &[("GET", "/items/{key}", n)],
            )
        };
        let result = reconcile(&server, &timeouts(3));
        assert!(result.checks[0].passed, "{:?}", result.checks);
        assert!(result.checks[0]
            .observed
            .contains("3 timeouts matched by 499"));
        // More 499s than timeouts: the server saw someone else leave.
        assert!(!passed(&server, &timeouts(2)));
        // A 499 on another route than the timeouts does not match them.
        let elsewhere = client(&[("GET", "/items/{key}", "200", 10)], &[("GET", "/", 3)]);
        assert!(!passed(&server, &elsewhere));
        // Once every timeout is a 499, nothing else is tolerated.
        let extra = delta(&[
            ("GET", "/items/{key}", "200", 11),
            ("GET", "/items/{key}", "499", 3),
        ]);
        assert!(!passed(&extra, &timeouts(3)));
    }

    #[test]
    fn probes_are_reported_never_failed() {
        let server = delta(&[
            ("GET", "/", "200", 5),
            ("GET", "/readyz", "200", 12),
            ("GET", "/metrics", "200", 3),
        ]);
        let result = reconcile(&server, &client(&[("GET", "/", "200", 5)], &[]));
        assert!(
            result.checks.iter().all(|c| c.passed),
            "{:?}",
            result.checks
        );
        assert!(result.problems.is_empty());
        assert_eq!(result.rows.len(), 2);
        assert!(result.rows.iter().all(|row| row.probe));
    }

    #[test]
    fn cache_counters_match_lookups_exactly() {
        let sent = client(
            &[
                ("GET", "/items/{key}", "200", 8),
                ("GET", "/items/{key}", "404", 2),
            ],
            &[],
        );
        let mut server = delta(&[
            ("GET", "/items/{key}", "200", 8),
            ("GET", "/items/{key}", "404", 2),
        ]);
        (server.cache_hits, server.cache_misses) = (8, 2);
        assert!(passed(&server, &sent));
        // A hit counted twice.
        server.cache_hits = 16;
        let result = reconcile(&server, &sent);
        let cache = result
            .checks
            .iter()
            .find(|c| c.name.contains("cache"))
            .unwrap();
        assert!(!cache.passed);
        assert_eq!(cache.observed, "server 16/2 vs client 8/2");
        // A miss counted as a hit is as wrong, even with equal totals.
        (server.cache_hits, server.cache_misses) = (9, 1);
        assert!(!passed(&server, &sent));
    }

    /// The cache slack is unanswered lookups, not the route's unanswered
    /// requests: timed-out `fault` requests (matched by 499s) used to
    /// excuse a service counting every hit twice.
    #[test]
    fn cache_slack_is_unanswered_lookups_not_matched_by_a_499() {
        let cache = |server: &Delta, sent: &ClientCounts| {
            reconcile(server, sent)
                .checks
                .into_iter()
                .find(|c| c.name.contains("cache"))
                .unwrap()
        };
        let mut sent = client(
            &[("GET", "/items/{key}", "200", 19)],
            &[("GET", "/items/{key}", 21)],
        );
        // All 21 unanswered were faults, all matched by the server's 499s.
        sent.uncertain_lookups = 0;
        let mut server = delta(&[
            ("GET", "/items/{key}", "200", 19),
            ("GET", "/items/{key}", "499", 21),
        ]);
        (server.cache_hits, server.cache_misses) = (38, 0);
        let check = cache(&server, &sent);
        assert!(!check.passed, "{check:?}");
        assert_eq!(check.expected, "hits = GET 200s, misses = GET 404s");
        // Two of them lookups: still nothing, the 499s explain all 21.
        sent.uncertain_lookups = 2;
        server.cache_hits = 20;
        assert!(!cache(&server, &sent).passed);
        // 19 answered as 499: 2 unanswered may have been counted.
        server
            .requests
            .insert(("GET".into(), "/items/{key}".into(), "499".into()), 19);
        server.cache_hits = 21;
        let check = cache(&server, &sent);
        assert!(check.passed, "{check:?}");
        assert!(check.expected.contains("≤ 2 unanswered"), "{check:?}");
        server.cache_hits = 22;
        assert!(!cache(&server, &sent).passed);
    }
}
