//! Which series are "the service under test": the Prometheus scrape target
//! whose address is loadgen's `--target`. Every server-side query is
//! scoped to its `job` and `instance`, so a Prometheus that scrapes another,
//! idle instance cannot make a check pass on 0 of nothing.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use crate::{
    engine::client::Target,
    verify::prometheus::{parse_prom_duration, Prometheus, ScrapeTarget},
};

/// Longest wait for a fresh Prometheus to list its targets.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// Routes probes and scrapers hit; never part of a user-facing ratio.
pub const NOT_USER_ROUTES: &str = "endpoint!~\"/metrics|/healthz|/readyz\"";

/// The scrape target of the service under test.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub job: String,
    pub instance: String,
    pub scrape_interval: Duration,
}

impl Scope {
    /// `job="…",instance="…"`, to put inside a selector's braces.
    pub fn selector(&self) -> String {
        format!(
            "job=\"{}\",instance=\"{}\"",
            escape(&self.job),
            escape(&self.instance)
        )
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

async fn addresses(authority: &str) -> BTreeSet<SocketAddr> {
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(with_port)
        .await
        .map(|found| found.collect())
        .unwrap_or_default()
}

/// `host:port` of a scrape URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Finds the active scrape target whose address is `target`'s (same
/// `host:port`, or the same resolved socket address).
pub async fn resolve(prometheus: &Prometheus, target: &Target) -> anyhow::Result<Scope> {
    // A Prometheus that just started lists no target until its first
    // service discovery; wait for that, not for a target that is missing.
    let started = std::time::Instant::now();
    let targets = loop {
        let targets = prometheus.targets().await?;
        if !targets.is_empty() || started.elapsed() > DISCOVERY_DEADLINE {
            break targets;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wanted: BTreeSet<SocketAddr> = BTreeSet::from([target.addr]);
    let mut found: Option<&ScrapeTarget> = None;
    for candidate in &targets {
        let address = authority(&candidate.scrape_url);
        if address == target.authority || !addresses(address).await.is_disjoint(&wanted) {
            found = Some(candidate);
            break;
        }
    }
    let Some(found) = found else {
        let scraped: Vec<String> = targets
            .iter()
            .map(|t| format!("{} ({})", authority(&t.scrape_url), t.job()))
            .collect();
        anyhow::bail!(
            "Prometheus at {} does not scrape the target {} (it scrapes: {}); server-side checks would measure another instance",
            prometheus.base(),
            target.base,
            if scraped.is_empty() { "nothing".to_owned() } else { scraped.join(", ") }
        );
    };
    Ok(Scope {
        job: found.job().to_owned(),
        instance: found
            .labels
            .get("instance")
            .cloned()
            .unwrap_or_else(|| authority(&found.scrape_url).to_owned()),
        scrape_interval: parse_prom_duration(&found.scrape_interval)
            .unwrap_or(Duration::from_secs(15)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_and_authority() {
        let scope = Scope {
            job: "items-service".into(),
            instance: "127.0.0.1:9000".into(),
            scrape_interval: Duration::from_secs(5),
        };
        assert_eq!(
            scope.selector(),
            r#"job="items-service",instance="127.0.0.1:9000""#
        );
        assert_eq!(authority("http://127.0.0.1:9000/metrics"), "127.0.0.1:9000");
        assert_eq!(authority("localhost:80"), "localhost:80");
    }
}
