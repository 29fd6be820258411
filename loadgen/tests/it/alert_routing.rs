//! The repository's Alertmanager config, run by a real Alertmanager (issue
//! 14): RedisDown inhibits the error, latency and SLO alerts it causes but
//! not the others, a critical alert inhibits its family's warnings, and the
//! Watchdog goes to its own receiver. Alerts are posted through the API, as
//! Prometheus would send them (with its `stack` external label).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use loadgen::verify::webhook;
use tokio_util::sync::CancellationToken;

use crate::common::{repo, spawn, wait_ready, Process};

struct Alertmanager {
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _process: Process,
}

impl Alertmanager {
    /// Nothing listens on the webhook: routing and inhibition do not care.
    async fn start() -> Self {
        Self::start_with_webhook("http://127.0.0.1:9/alerts").await
    }

    async fn start_with_webhook(webhook: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = std::fs::read_to_string(repo().join("prometheus/alertmanager.yml"))
            .unwrap()
            .replace("http://host.docker.internal:9099/alerts", webhook);
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).unwrap();
        let port = items_service::testing::free_port();
        let process = spawn(
            "prometheus-alertmanager",
            &[
                format!("--config.file={}", path.display()),
                format!("--storage.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".into(),
            ],
            "prometheus-alertmanager",
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{url}/-/ready"), "alertmanager").await;
        Self {
            url,
            http: reqwest::Client::new(),
            _dir: dir,
            _process: process,
        }
    }

    async fn fire(&self, alerts: &[(&str, &str, &str, &str)]) {
        self.fire_with(alerts, &[]).await;
    }

    /// Like [`Self::fire`], with `extra` labels on every alert.
    async fn fire_with(&self, alerts: &[(&str, &str, &str, &str)], extra: &[(&str, &str)]) {
        let body: Vec<Value> = alerts
            .iter()
            .map(|(name, severity, family, job)| {
                let mut labels = json!({"alertname": name, "severity": severity,
                                        "family": family, "stack": "items-stack"});
                if !job.is_empty() {
                    labels["job"] = json!(job);
                }
                for (key, value) in extra {
                    labels[*key] = json!(value);
                }
                json!({ "labels": labels })
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }

    /// Waits until `check` holds for the alerts Alertmanager reports
    /// (state and receivers per alert name), or fails with the last view.
    async fn until(&self, what: &str, check: impl Fn(&Value) -> bool) {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < Duration::from_secs(30) {
            let alerts: Value = self
                .http
                .get(format!("{}/api/v2/alerts", self.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            last = alerts
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let receivers: Vec<&Value> = a["receivers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| &r["name"])
                        .collect();
                    (
                        a["labels"]["alertname"].as_str().unwrap().to_owned(),
                        json!({"state": a["status"]["state"], "receivers": receivers}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
            if check(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{what}: Alertmanager reports {last:#}");
    }
}

#[tokio::test]
async fn redis_down_inhibits_what_it_causes_and_the_watchdog_has_its_own_receiver() {
    let am = Alertmanager::start().await;
    let service = "items-service";
    am.fire(&[
        ("HighErrorRate", "warning", "errors", service),
        ("HighLatencyP99", "warning", "latency", service),
        ("ErrorBudgetBurnFast", "critical", "slo", service),
        ("LowCacheHitRate", "warning", "cache", service),
        ("Watchdog", "none", "meta", ""),
    ])
    .await;
    let state = |alerts: &Value, name: &str| alerts[name]["state"].clone();
    am.until("before RedisDown everything is active", |a| {
        [
            "HighErrorRate",
            "HighLatencyP99",
            "ErrorBudgetBurnFast",
            "LowCacheHitRate",
        ]
        .iter()
        .all(|n| state(a, n) == "active")
            && a["Watchdog"]["receivers"] == json!(["watchdog"])
            && a["HighErrorRate"]["receivers"] == json!(["webhook"])
    })
    .await;

    // A missing exporter explains none of the service's errors: no inhibition.
    let redis_down = [("RedisDown", "critical", "availability", "redis")];
    am.fire_with(&redis_down, &[("cause", "exporter")]).await;
    am.until("RedisDown for a missing exporter suppresses nothing", |a| {
        state(a, "RedisDown") == "active"
            && ["HighErrorRate", "HighLatencyP99", "ErrorBudgetBurnFast"]
                .iter()
                .all(|n| state(a, n) == "active")
    })
    .await;
    am.fire_with(&redis_down, &[("cause", "redis")]).await;
    am.until("RedisDown suppresses errors, latency and SLO alerts", |a| {
        ["HighErrorRate", "HighLatencyP99", "ErrorBudgetBurnFast"]
            .iter()
            .all(|n| state(a, n) == "suppressed")
            && state(a, "LowCacheHitRate") == "active"
            && state(a, "RedisDown") == "active"
            && state(a, "Watchdog") == "active"
    })
    .await;
}

#[tokio::test]
async fn a_critical_alert_inhibits_the_warnings_of_its_family_and_job_only() {
    let am = Alertmanager::start().await;
    am.fire(&[
        ("CriticalErrorRate", "critical", "errors", "items-service"),
        ("HighErrorRate", "warning", "errors", "items-service"),
        ("ErrorBurst", "warning", "errors", "items-service"),
        ("HighLatencyP99", "warning", "latency", "items-service"),
        // A fast SLO burn is critical in its own family: it leaves the
        // absolute-rate warnings alone, and silences the slow burn.
        ("ErrorBudgetBurnFast", "critical", "slo", "items-service"),
        ("ErrorBudgetBurnSlow", "warning", "slo", "items-service"),
    ])
    .await;
    am.until("family inhibition", |a| {
        let state = |n: &str| a[n]["state"].clone();
        state("HighErrorRate") == "suppressed"
            && state("ErrorBurst") == "suppressed"
            && state("ErrorBudgetBurnSlow") == "suppressed"
            && state("HighLatencyP99") == "active"
            && state("CriticalErrorRate") == "active"
            && state("ErrorBudgetBurnFast") == "active"
    })
    .await;
}

/// Redis going down: ErrorBurst (no `for`) reaches Alertmanager first, and
/// RedisDown only after its 30s `for`. RedisDownInhibitor (no `for`) comes
/// up to a scrape and an evaluation later (8s here) and must mute the burst
/// before the warnings' group_wait sends it. The same burst from another
/// stack is the control: it proves the group was flushed to the webhook.
#[tokio::test]
async fn an_error_burst_caused_by_redis_going_down_is_never_notified() {
    let stop = CancellationToken::new();
    let (inbox, addr) = webhook::listen("127.0.0.1:0", stop.clone()).await.unwrap();
    let am = Alertmanager::start_with_webhook(&format!("http://{addr}/alerts")).await;
    let burst = [("ErrorBurst", "warning", "errors", "items-service")];
    am.fire_with(&burst, &[("stack", "elsewhere")]).await;
    am.fire(&burst).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    am.fire_with(
        &[("RedisDownInhibitor", "none", "meta", "redis")],
        &[("cause", "redis")],
    )
    .await;

    let started = Instant::now();
    let stack_of = |d: &webhook::Delivery| d.labels.get("stack").cloned().unwrap_or_default();
    while !inbox
        .deliveries()
        .iter()
        .any(|d| d.alertname == "ErrorBurst" && stack_of(d) == "elsewhere")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the control burst never reached the webhook: {:?}",
            inbox.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leaked: Vec<_> = inbox
        .deliveries()
        .into_iter()
        .filter(|d| stack_of(d) == "items-stack")
        .map(|d| (d.alertname, d.status))
        .collect();
    assert!(
        leaked.is_empty(),
        "notified although Redis down explains it (or the inhibitor itself): {leaked:?}"
    );
    am.until("the inhibitor goes to no one", |a| {
        a["RedisDownInhibitor"]["receivers"] == json!(["inhibit-only"])
    })
    .await;
    stop.cancel();
}
