//! loadgen's own metrics (SPEC §10) as a real Prometheus scrapes them:
//! names and labels of the interface, exact counts after the run (the run
//! waits for the final scrape), and a busy port refused with exit 2.

use std::collections::BTreeSet;

use items_service::testing::free_port;
use loadgen::{verify::prometheus::Prometheus, Exit};

use crate::common::{loadgen, run_with_report, scenario, Monitoring, Service};

/// An open-loop phase that drops (a slow fault against a small in-flight
/// cap) and a closed-loop phase: every kind of status.
const WATCHED: &str = r#"
name = "watched"
seed = 3
[keyspace]
preload = 50
[mix]
get_hit = 3
get_miss = 1
fault = 4
[fault]
status = 503
delay = "150ms"
[[phases]]
name = "open"
executor = "constant-arrival-rate"
rate = 80
duration = "3s"
max_in_flight = 4
[[phases]]
name = "closed"
executor = "constant-vus"
vus = 3
duration = "3s"
# Uses Prometheus, so the report carries the server's series too.
[expect.server]
error_ratio_max = 1.0
"#;

async fn value(prometheus: &Prometheus, query: &str) -> f64 {
    let samples = prometheus.query(query, None).await.expect("query");
    assert_eq!(samples.len(), 1, "`{query}` → {samples:?}");
    samples[0].value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_holds_exactly_the_clients_counts_after_the_run() {
    let service = Service::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let monitoring = Monitoring::scraping_loadgen(&service, &listen).await;
    let prometheus = Prometheus::new(&monitoring.prometheus);
    monitoring.until_scraped("loadgen").await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--prometheus",
        &monitoring.prometheus,
        "--metrics-listen",
        &listen,
    ];
    let (exit, out, report) = run_with_report(&dir, &service, WATCHED, &args).await;
    assert_eq!(exit, Exit::Pass, "{out}");
    assert!(!out.contains("warning"), "{out}");
    let summary = &report["summary"];
    let run = format!("run_id=\"{}\"", report["run_id"].as_str().unwrap());
    let (requests, dropped) = (
        summary["requests"].as_u64().unwrap(),
        summary["dropped"].as_u64().unwrap(),
    );
    assert!(dropped > 0, "the scenario must drop: {summary}");

    // No wait here: the run itself waited for the final scrape.
    let total = value(
        &prometheus,
        &format!("sum(loadgen_requests_total{{{run}}})"),
    )
    .await;
    assert_eq!(total, (requests + dropped) as f64, "completed + dropped");
    let dropped_metric = value(
        &prometheus,
        &format!("sum(loadgen_requests_total{{{run},status=\"dropped\"}})"),
    )
    .await;
    assert_eq!(dropped_metric, dropped as f64);
    let observed = value(
        &prometheus,
        &format!("sum(loadgen_request_duration_seconds_count{{{run}}})"),
    )
    .await;
    assert_eq!(observed, requests as f64);
    let scheduled = summary["phases"][0]["scheduled"].as_u64().unwrap();
    assert_eq!(scheduled, 240);
    let scheduled_metric = value(
        &prometheus,
        &format!("sum(loadgen_scheduled_requests_total{{{run}}})"),
    )
    .await;
    assert_eq!(scheduled_metric, scheduled as f64);
    // Per operation and status, as the client counted them.
    for op in summary["operations"].as_array().unwrap() {
        let name = op["name"].as_str().unwrap();
        for (status, count) in op["statuses"].as_object().unwrap() {
            let query = format!(
                "sum(loadgen_requests_total{{{run},operation=\"{name}\",status=\"{status}\"}})"
            );
            assert_eq!(value(&prometheus, &query).await, count.as_f64().unwrap());
        }
    }
    // Both phases are over, and were seen running with their load.
    for phase in ["open", "closed"] {
        let active = format!("loadgen_phase_active{{{run},phase=\"{phase}\"}}");
        assert_eq!(value(&prometheus, &active).await, 0.0, "{phase} ended");
        assert_eq!(
            value(&prometheus, &format!("max_over_time({active}[5m])")).await,
            1.0,
            "{phase} seen active"
        );
    }
    let peak = |metric: &str, phase: &str| {
        format!("max_over_time({metric}{{{run},phase=\"{phase}\"}}[5m])")
    };
    assert_eq!(
        value(&prometheus, &peak("loadgen_target_rate", "open")).await,
        80.0
    );
    assert_eq!(
        value(&prometheus, &peak("loadgen_vus", "closed")).await,
        3.0
    );
    assert!(value(&prometheus, &peak("loadgen_in_flight", "open")).await >= 1.0);
    assert_eq!(
        value(
            &prometheus,
            &format!("loadgen_in_flight{{{run},phase=\"open\"}}")
        )
        .await,
        0.0
    );

    // The label sets of the interface, exactly.
    let common = ["run_id", "scenario", "phase"];
    let expected: [(&str, &[&str]); 8] = [
        ("loadgen_requests_total", &["operation", "status"]),
        (
            "loadgen_request_duration_seconds_bucket",
            &["operation", "le"],
        ),
        ("loadgen_scheduled_requests_total", &[]),
        ("loadgen_target_rate", &[]),
        ("loadgen_vus", &[]),
        ("loadgen_in_flight", &[]),
        ("loadgen_phase_active", &[]),
        ("loadgen_run_info", &[]),
    ];
    for (metric, extra) in expected {
        let series = prometheus
            .query(&format!("{metric}{{{run}}}"), None)
            .await
            .unwrap();
        assert!(!series.is_empty(), "no {metric}");
        let wanted: BTreeSet<&str> = if metric == "loadgen_run_info" {
            ["run_id", "scenario", "seed", "version", "target"].into()
        } else {
            common.iter().chain(extra).copied().collect()
        };
        for sample in &series {
            let labels: BTreeSet<&str> = sample
                .labels
                .keys()
                .map(String::as_str)
                .filter(|l| !["__name__", "job", "instance"].contains(l))
                .collect();
            assert_eq!(labels, wanted, "{metric}");
        }
    }
    let info = prometheus
        .query(&format!("loadgen_run_info{{{run}}}"), None)
        .await
        .unwrap();
    assert_eq!(info[0].labels["scenario"], "watched");
    assert_eq!(info[0].labels["seed"], "3");
    assert_eq!(info[0].labels["target"], service.url());
    // Every series was scraped at 0 before its first request, so rate()
    // and increase() see every request (even a burst within one scrape).
    let late = prometheus
        .query(
            &format!("min_over_time(loadgen_requests_total{{{run}}}[5m]) > 0"),
            None,
        )
        .await
        .unwrap();
    assert!(late.is_empty(), "series first seen above 0: {late:?}");
    let seen = value(
        &prometheus,
        &format!("sum(max_over_time(loadgen_requests_total{{{run}}}[5m]) - min_over_time(loadgen_requests_total{{{run}}}[5m]))"),
    )
    .await;
    assert_eq!(seen, (requests + dropped) as f64, "increases seen");
    let statuses: BTreeSet<String> = prometheus
        .query(
            &format!("count by (status) (loadgen_requests_total{{{run}}})"),
            None,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.labels["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        ["200", "404", "503", "dropped", "io", "timeout"]
            .map(String::from)
            .into()
    );
    // Last (the series above go stale once loadgen has stopped): the
    // server's side over time made it into the report and its page.
    let server = &report["server"]["points"];
    assert!(
        server
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["rate"].as_f64() > Some(10.0)),
        "{server}"
    );
    let html = dir.path().join("report.html");
    std::fs::write(&html, loadgen::report::html::render(&report)).unwrap();
    let rendered = crate::html::open_in_chromium(&html).await;
    crate::html::assert_rendered(&rendered, 6, &["Server side (Prometheus): p99 latency"]);
}

#[tokio::test]
async fn a_busy_metrics_port_is_exit_2_before_any_request() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "any", WATCHED);
    // No service at the target: the port is refused before it matters.
    let target = format!("http://127.0.0.1:{}", free_port());
    let (exit, out, err) = loadgen(&[
        "run",
        path.to_str().unwrap(),
        "--target",
        &target,
        "--metrics-listen",
        &addr,
    ])
    .await;
    assert_eq!(exit, Exit::Error, "{out}{err}");
    assert!(
        err.contains(&format!("cannot serve loadgen metrics on {addr}"))
            && err.contains("--metrics-listen off"),
        "{err}"
    );
    assert_eq!(err.matches("in use").count(), 1, "said once: {err}");
    assert!(out.is_empty(), "{out}");
}

/// Sends SIGCONT to a stopped process when dropped (also on panic).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Self {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid}");
}

/// Polls loadgen's own /metrics until `loadgen_phase_active` is `value`.
async fn wait_for_phase_active(listen: &str, value: &str) {
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        let body = match http.get(format!("http://{listen}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body
            .lines()
            .any(|l| l.starts_with("loadgen_phase_active{") && l.ends_with(&format!(" {value}")))
        {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "loadgen_phase_active never {value}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Ctrl-C while the run waits for Prometheus' final scrape (Prometheus
/// stalled) interrupts the run: exit 130, `interrupted` in the report, and
/// a warning that loadgen's final values may be missing in Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_final_scrape_wait_interrupts_the_run() {
    let service = Service::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let monitoring = Monitoring::scraping_loadgen(&service, &listen).await;
    monitoring.until_scraped("loadgen").await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "short",
        "[mix]\nroot = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"2s\"\n",
    );
    let json = dir.path().join("report.json");
    let argv = [
        "loadgen",
        "run",
        path.to_str().unwrap(),
        "--target",
        &service.url(),
        "--prometheus",
        &monitoring.prometheus,
        "--metrics-listen",
        &listen,
        "--quiet",
        "--out",
        json.to_str().unwrap(),
    ];
    let cli = <loadgen::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    // Ctrl-C once the phase is over, with Prometheus stalled: the run is
    // then waiting for the final scrape (or about to).
    let watcher = tokio::spawn({
        let (cancel, listen) = (cancel.clone(), listen.clone());
        let pid = monitoring.prometheus_pid;
        async move {
            wait_for_phase_active(&listen, "1").await;
            // From now on no scrape reaches Prometheus: the wait stalls.
            let stopped = Stopped::stop(pid);
            wait_for_phase_active(&listen, "0").await;
            cancel.cancel();
            (stopped, std::time::Instant::now())
        }
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // The final wait alone would last 12 s (2 intervals + 10 s).
    let exit = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        loadgen::main_with(cli.command, cancel, &mut out, &mut err),
    )
    .await
    .expect("the run ends");
    let (_stopped, cancelled_at) = watcher.await.unwrap();
    assert!(
        cancelled_at.elapsed() < std::time::Duration::from_secs(5),
        "slow to stop: {:?}",
        cancelled_at.elapsed()
    );
    let out = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
    assert_eq!(exit, Exit::Interrupted, "{out}");
    assert!(
        out.contains("warning: interrupted before Prometheus' final scrape")
            && out.contains("final values may be missing"),
        "{out}"
    );
    assert!(!out.contains("no checks in this scenario"), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["summary"]["interrupted"], true, "{report}");
}
