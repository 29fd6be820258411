//! Verification against a real Prometheus and Alertmanager started by the
//! test with a copy of the repository's rules — including the ways the
//! checks must fail.

use loadgen::Exit;

use crate::common::{loadgen, run_scenario, scenario, Monitoring, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_checks_the_server_side_and_fails_an_unreachable_hit_ratio() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    let dir = tempfile::tempdir().unwrap();
    // Half the lookups miss: a hit ratio of 0.9 cannot be met, while the
    // server's ratio must still match the client's.
    let path = scenario(
        &dir,
        "half",
        "[keyspace]\npreload = 20\n[mix]\nget_hit = 1\nget_miss = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 100\nduration = \"3s\"\n\
         [expect.server]\nerror_ratio_max = 0.0\ncache_hit_ratio_min = 0.9\ncache_hit_ratio_matches_client = 0.001\n\
         [[expect.promql]]\nname = \"lookups counted\"\nquery = 'sum(increase(redis_app_cache_hit_total{$__target}[$__range])) + sum(increase(redis_app_cache_miss_total{$__target}[$__range]))'\nmin = 299\nmax = 301\n",
    );
    let (exit, out, err) = run_scenario(&path, &service, Some(&monitoring.prometheus), &[]).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{out}"))
            .to_owned()
    };
    assert!(
        row("server cache hit ratio  ").contains("FAIL")
            || row("server cache hit ratio ").contains("FAIL"),
        "{out}"
    );
    assert!(row("matches client").contains("PASS"), "{out}");
    assert!(row("server error ratio").contains("PASS"), "{out}");
    assert!(row("lookups counted").contains("PASS"), "{out}");
    assert!(out.contains("FAIL: 1 of "), "{out}");
}

#[tokio::test]
async fn unreachable_prometheus_is_exit_2_with_a_clear_message() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "server",
        "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\n[expect.server]\nerror_ratio_max = 0.0\n",
    );
    let port = items_service::testing::free_port();
    let prometheus = format!("http://127.0.0.1:{port}");
    let (exit, _, err) = loadgen(&[
        "run",
        path.to_str().unwrap(),
        "--target",
        &service.url(),
        "--prometheus",
        &prometheus,
    ])
    .await;
    assert_eq!(exit, Exit::Error);
    assert!(
        err.contains(&format!("cannot reach Prometheus at {prometheus}")),
        "{err}"
    );
    let (exit, _, err) = loadgen(&["verify-dashboard", "--prometheus", &prometheus]).await;
    assert_eq!(exit, Exit::Error, "{err}");
}

pub async fn verify_alerts(service: &Service, monitoring: &Monitoring) -> (Exit, String, String) {
    loadgen(&[
        "verify-alerts",
        "--target",
        &service.url(),
        "--prometheus",
        &monitoring.prometheus,
        "--alertmanager",
        &monitoring.alertmanager,
        "--webhook-listen",
        "127.0.0.1:0",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_alerts_names_an_alert_whose_threshold_cannot_be_reached() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| {
        rules.replace(
            "job:http_requests_5xx:rate1m > 0.1",
            "job:http_requests_5xx:rate1m > 100",
        )
    })
    .await;
    let (exit, out, err) = verify_alerts(&service, &monitoring).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.contains("HighErrorRate can fire as planned"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("FAIL") && row.contains("100.000 5xx/s"),
        "{row}"
    );
    assert!(out.contains("nothing was sent"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_alerts_fails_the_quiet_step_when_404_counts_as_an_error() {
    let service = Service::start().await;
    // The original project's bug: 404 counted as an error.
    let monitoring = Monitoring::start(&service, |rules| {
        let errors = r#"status_code=~"5..|499""#;
        assert!(rules.contains(errors), "the rules no longer count {errors}");
        rules.replace(errors, r#"status_code=~"5..|499|404""#)
    })
    .await;
    let (exit, out, err) = verify_alerts(&service, &monitoring).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.contains("quiet: normal traffic fires nothing"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("FAIL") && row.contains("HighErrorRate"),
        "{row}"
    );
    assert!(
        !out.contains("warning: 0.333"),
        "later steps must not run: {out}"
    );
}

/// The shipped dashboard passing after traffic is in `verdicts`; here,
/// broken panels fail whatever the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dashboard_fails_broken_panels() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    let json = serde_json::json!({
        "templating": {"list": []},
        "panels": [
            {"title": "bad query", "fieldConfig": {"defaults": {"unit": "s"}}, "targets": [{"refId": "A", "expr": "sum(rate(http_requests_total[1m]"}]},
            {"title": "no data", "fieldConfig": {"defaults": {"unit": "s"}}, "targets": [{"refId": "A", "expr": "no_such_metric_anywhere"}]},
            {"title": "no unit", "targets": [{"refId": "A", "expr": "up"}]}
        ]
    });
    std::fs::write(&broken, json.to_string()).unwrap();
    let (exit, out, _) = loadgen(&[
        "verify-dashboard",
        "--prometheus",
        &monitoring.prometheus,
        broken.to_str().unwrap(),
    ])
    .await;
    assert_eq!(exit, Exit::CheckFailed, "{out}");
    assert!(out.contains("bad_data"), "query error not shown: {out}");
    assert!(out.contains("FAIL: no data"), "{out}");
    assert!(out.contains("FAIL: panel has no unit"), "{out}");
    assert!(out.contains("FAIL: 3 of 3 panel queries failed"), "{out}");
}

/// A 16 h window at the 1 s scrape step is 57,600 points: Prometheus
/// refused it ("exceeded maximum resolution"), failing every panel of a
/// correct dashboard. The step grows with the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dashboard_accepts_a_soak_length_window() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    monitoring.until_scraped("items-service").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.json");
    let json = serde_json::json!({
        "templating": {"list": []},
        "panels": [{"title": "up", "fieldConfig": {"defaults": {"unit": "none"}}, "targets": [{"refId": "A", "expr": "up"}]}]
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Up to a minute ahead: the last step (6 s) lies after the first
    // scrape, which Prometheus looks back to.
    let (from, to) = ((now - 16 * 3600).to_string(), (now + 60).to_string());
    let (exit, out, err) = loadgen(&[
        "verify-dashboard",
        "--prometheus",
        &monitoring.prometheus,
        "--from",
        &from,
        "--to",
        &to,
        path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(exit, Exit::Pass, "{out}{err}");
}
