//! Issue 10: every verdict can fail, and for the right reason. Each test
//! applies one of the mutations that used to pass (or a situation that
//! used to fail spuriously) against real Prometheus, Alertmanager, Redis
//! and items-service processes.

use items_service::testing::free_port;
use loadgen::Exit;

use crate::common::{
    dashboard_until_pass, loadgen, repo, run_scenario, scenario, with_watchdog, Monitoring, Service,
};
use crate::verify::verify_alerts;

fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no {name} row:\n{out}"))
}

/// Severity swapped, `for: 0s`, a threshold of 0: caught by the preflight,
/// naming the alert and what differs, before any traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_alerts_preflight_names_mutated_labels_for_and_thresholds() {
    let service = Service::start().await;
    type Edit = fn(String) -> String;
    let cases: [(Edit, &str, &str); 3] = [
        (
            |rules| {
                rules
                    .replacen("severity: warning", "severity: SWAP", 1)
                    .replacen("severity: critical", "severity: warning", 1)
                    .replacen("severity: SWAP", "severity: critical", 1)
            },
            "HighErrorRate labels and for as planned",
            "label severity=\"critical\", expected severity=\"warning\"",
        ),
        (
            |rules| rules.replacen("for: 1m", "for: 0s", 1),
            "HighErrorRate labels and for as planned",
            "HighErrorRate: for 0ns, expected 60s",
        ),
        (
            |rules| {
                rules.replace(
                    "job:http_requests_5xx:rate1m > 0.1",
                    "job:http_requests_5xx:rate1m > 0",
                )
            },
            "HighErrorRate can fire as planned",
            "threshold between 0.050 and 0.333",
        ),
    ];
    for (edit, name, culprit) in cases {
        let monitoring = Monitoring::start(&service, edit).await;
        let (exit, out, err) = verify_alerts(&service, &monitoring).await;
        assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
        let row = row(&out, name);
        assert!(
            row.contains("FAIL") && row.contains(culprit),
            "{row}\n{out}"
        );
        assert!(out.contains("nothing was sent"), "{out}");
    }
}

/// A misspelled `[[expect.alerts]]` name used to pass `inactive`; a
/// Prometheus that scrapes another instance used to pass on its zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejects_unknown_alert_names_and_an_unscraped_target() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    let dir = tempfile::tempdir().unwrap();
    let base = "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\n";
    let typo = scenario(
        &dir,
        "typo",
        &format!("{base}[[expect.alerts]]\nname = \"HighErrorRat\"\nstate = \"inactive\"\n"),
    );
    let (exit, _, err) = run_scenario(&typo, &service, Some(&monitoring.prometheus), &[]).await;
    assert_eq!(exit, Exit::Error, "{err}");
    assert!(
        err.contains("`HighErrorRat` is not an alert rule loaded"),
        "{err}"
    );
    assert!(err.contains("did you mean `HighErrorRate`?"), "{err}");

    let other = Service::start().await;
    let server = scenario(
        &dir,
        "server",
        &format!("{base}[expect.server]\nerror_ratio_max = 0.0\n"),
    );
    let (exit, _, err) = run_scenario(&server, &other, Some(&monitoring.prometheus), &[]).await;
    assert_eq!(exit, Exit::Error, "{err}");
    assert!(
        err.contains(&format!("does not scrape the target {}", other.url())),
        "{err}"
    );
}

/// `inactive` used to look at `firing` only: an alert that went pending
/// during the run (its `for` longer than the run) passed. `firing` used to
/// pass on an alert already firing before the run (Watchdog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_fails_when_pending_and_firing_needs_a_transition() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| {
        with_watchdog(rules.replacen("for: 1m", "for: 1h", 1))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "pending",
        "[keyspace]\npreload = 5\n[mix]\nfault = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"4s\"\n\
         [[expect.alerts]]\nname = \"HighErrorRate\"\nstate = \"inactive\"\nwithin = \"3s\"\n\
         [[expect.alerts]]\nname = \"Watchdog\"\nstate = \"firing\"\n",
    );
    let (exit, out, err) = run_scenario(&path, &service, Some(&monitoring.prometheus), &[]).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let pending = row(&out, "alert HighErrorRate stays inactive");
    assert!(
        pending.contains("was pending") && pending.contains("FAIL"),
        "{pending}"
    );
    let stale = row(&out, "alert Watchdog fires");
    assert!(
        stale.contains("already firing when the run started") && stale.contains("FAIL"),
        "{stale}"
    );
}

/// Timeouts on one route used to excuse foreign requests anywhere; probes
/// (a Compose healthcheck on /readyz) used to fail the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_is_per_route_one_way_and_ignores_probes() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Faults delayed past the request timeout: GET /items/{key} times out.
    let path = scenario(
        &dir,
        "timeouts",
        "request_timeout = \"100ms\"\n[keyspace]\npreload = 5\n[mix]\nfault = 1\nroot = 1\n[fault]\nstatus = 500\ndelay = \"400ms\"\n\
         [[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"2s\"\n",
    );
    let url = service.url();
    let probes = |foreign: bool| {
        let url = url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            // After the preload and the first /metrics read, inside the
            // 2 s of traffic.
            for _ in 0..5 {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                http.get(format!("{url}/readyz")).send().await.unwrap();
                if foreign {
                    http.post(format!("{url}/items"))
                        .header("content-type", "application/json")
                        .body(r#"{"key":"foreign","value":1}"#)
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    };
    let args = ["run", path.to_str().unwrap(), "--target", &url, "-q"];
    let run = || loadgen(&args);
    let background = probes(false);
    let (exit, out, err) = run().await;
    background.await.unwrap();
    assert_eq!(
        exit,
        Exit::Pass,
        "probes and timeouts alone must pass: {out}{err}"
    );
    assert!(out.contains("probe/scrape, not reconciled"), "{out}");
    assert!(
        row(&out, "reconcile server counts").contains("tolerated"),
        "{out}"
    );

    let background = probes(true);
    let (exit, out, err) = run().await;
    background.await.unwrap();
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let row = row(&out, "reconcile server counts");
    assert!(
        row.contains("POST /items: the server counted")
            && row.contains("more than the client, 0 explained"),
        "{row}"
    );
}

/// verify-dashboard over a run's window: legend labels, panels without
/// targets and never-empty expressions fail; the shipped dashboard passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dashboard_checks_legends_targets_and_never_empty_over_the_run_window() {
    let service = Service::start().await;
    // Scraping loadgen's own metrics and Alertmanager, as the stack does:
    // the shipped dashboard's Load generator row and notification panel
    // must have data over the run's window too.
    let listen = format!("127.0.0.1:{}", free_port());
    let monitoring = Monitoring::scraping_loadgen(&service, &listen).await;
    monitoring.until_scraped("loadgen").await;
    monitoring.until_scraped("alertmanager").await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "traffic",
        // Injected 503s: the client-error panel and the firing-alerts
        // annotation (ErrorBurst, > 10 errors in a minute, fires at once)
        // have data too.
        "[keyspace]\npreload = 20\n[mix]\nget_hit = 8\nget_miss = 2\nput = 1\nfault = 2\n[fault]\nstatus = 503\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"8s\"\n[expect.server]\nerror_ratio_max = 0.5\n",
    );
    let report = dir.path().join("run.json");
    // With a server expectation, the run waits for Prometheus to scrape
    // the service before and after: its window holds scraped traffic.
    let (exit, out, _) = run_scenario(
        &path,
        &service,
        Some(&monitoring.prometheus),
        &[
            "-q",
            "--out",
            report.to_str().unwrap(),
            "--metrics-listen",
            &listen,
        ],
    )
    .await;
    assert_eq!(exit, Exit::Pass, "{out}");
    let shipped = repo().join("grafana/dashboards/items-service.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    let mutated = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut copy = json.clone();
        edit(&mut copy);
        let path = dir.path().join(name);
        std::fs::write(&path, copy.to_string()).unwrap();
        path
    };
    let panel = |d: &mut serde_json::Value, title: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut stack: Vec<&mut serde_json::Value> =
            d["panels"].as_array_mut().unwrap().iter_mut().collect();
        while let Some(p) = stack.pop() {
            if p["title"] == title {
                return edit(p);
            }
            if let Some(inner) = p.get_mut("panels").and_then(|v| v.as_array_mut()) {
                stack.extend(inner.iter_mut());
            }
        }
        panic!("no panel {title}");
    };
    let legend = mutated("legend.json", &|d| {
        panel(d, "Status codes", &|p| {
            let expr = p["targets"][0]["expr"]
                .as_str()
                .unwrap()
                .replace("sum by (status_code)", "sum");
            p["targets"][0]["expr"] = expr.into();
        })
    });
    let empty = mutated("empty.json", &|d| {
        panel(d, "Request rate (user routes)", &|p| {
            p["targets"] = serde_json::json!([])
        })
    });
    let never = mutated("never.json", &|d| {
        panel(d, "Firing alerts", &|p| {
            p["targets"][0]["expr"] =
                "sum by (alertname) (ALERTZ{alertstate=\"firing\"}) or on () vector(0)".into();
        })
    });
    let verify = |path: std::path::PathBuf| {
        let (prometheus, report) = (monitoring.prometheus.clone(), report.clone());
        async move {
            loadgen(&[
                "verify-dashboard",
                "--prometheus",
                &prometheus,
                "--report",
                report.to_str().unwrap(),
                path.to_str().unwrap(),
            ])
            .await
        }
    };
    let last = dashboard_until_pass(
        &monitoring.prometheus,
        &[
            "--report",
            report.to_str().unwrap(),
            shipped.to_str().unwrap(),
        ],
    )
    .await;
    assert!(last.is_empty(), "shipped dashboard never passed:\n{last}");
    for (path, panel, culprit) in [
        (
            legend,
            "Status codes",
            "FAIL: legend label status_code not in the result",
        ),
        (
            empty,
            "Request rate (user routes)",
            "FAIL: panel has no targets",
        ),
        (never, "Firing alerts", "FAIL: never empty by construction"),
    ] {
        let (exit, out, err) = verify(path).await;
        assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
        assert!(row(&out, panel).contains(culprit), "{panel}: {out}");
        assert!(out.contains("FAIL: 1 of "), "only {panel} fails: {out}");
    }
}

/// A rule whose real threshold (0.033/s) hides from the preflight's parser
/// (it reads `> 0.1`): only the below-threshold step, 0.05 5xx/s, catches
/// it — the alert goes pending where it must stay inactive. (Above the
/// ~0.017/s of the preflight's one injected 500, so the quiet step passes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_alerts_below_threshold_step_catches_a_hidden_sensitive_threshold() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| {
        rules.replacen(
            "expr: job:http_requests_5xx:rate1m > 0.1",
            "expr: (job:http_requests_5xx:rate1m * 3) > 0.1",
            1,
        )
    })
    .await;
    let (exit, out, err) = verify_alerts(&service, &monitoring).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    assert!(
        row(&out, "HighErrorRate can fire as planned").contains("PASS"),
        "{out}"
    );
    assert!(
        row(&out, "quiet: normal traffic fires nothing").contains("PASS"),
        "{out}"
    );
    let below = row(&out, "below threshold: 0.050 5xx/s fires nothing");
    assert!(
        below.contains("FAIL") && below.contains("HighErrorRate (pending)"),
        "{below}\n{out}"
    );
    assert!(
        !out.contains("warning: 0.333"),
        "later steps must not run: {out}"
    );
}

/// Probes and scrapes used to sit in the server error ratio's denominator:
/// enough `/readyz` probes diluted real 5xx below the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_ratio_ignores_probes() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    let dir = tempfile::tempdir().unwrap();
    // 1 in 10 requests is an injected 500: 10 %, far above the 3 % bound.
    let path = scenario(
        &dir,
        "ratio",
        "[keyspace]\npreload = 5\n[mix]\nfault = 1\nroot = 9\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 40\nduration = \"3s\"\n\
         [expect.server]\nerror_ratio_max = 0.03\n",
    );
    let url = service.url();
    let stop = tokio_util::sync::CancellationToken::new();
    let probes = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.is_cancelled() {
                let _ = http.get(format!("{url}/readyz")).send().await;
            }
        })
    };
    let (exit, out, err) =
        run_scenario(&path, &service, Some(&monitoring.prometheus), &["-q"]).await;
    stop.cancel();
    probes.await.unwrap();
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let ratio = row(&out, "server error ratio (5xx, 499)");
    assert!(ratio.contains("FAIL"), "{ratio}\n{out}");
}

/// Percentiles of nothing read 0 and used to pass any `≤` bound; an error
/// ratio of 0 of 0 passed too. A phase that sends nothing is "no data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_without_data_fail() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "nothing",
        "[mix]\nroot = 1\n[[phases]]\nexecutor = \"ramping-arrival-rate\"\nstages = [{ target = 0, duration = \"1s\" }]\n\
         [expect.client]\np50_max = \"100ms\"\np99_max = \"100ms\"\nerror_ratio_max = 0.0\n",
    );
    let (exit, out, err) = run_scenario(&path, &service, None, &["-q"]).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    for name in ["client p50_max", "client p99_max", "client error_ratio_max"] {
        let row = row(&out, name);
        assert!(row.contains("no data") && row.contains("FAIL"), "{row}");
    }
}

/// Every request times out (fault delay 400 ms, timeout 100 ms): the
/// percentiles used to be the give-up times (~100 ms) and passed a 1 s
/// bound although nothing was answered. They are over answered requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_checks_fail_when_no_request_got_an_answer() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "unanswered",
        "request_timeout = \"100ms\"\n[keyspace]\npreload = 2\n[mix]\nfault = 1\n[fault]\nstatus = 503\ndelay = \"400ms\"\n\
         [[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\n\
         [expect.client]\np50_max = \"1s\"\np99_max = \"1s\"\n",
    );
    let (exit, out, err) = run_scenario(&path, &service, None, &[]).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    for name in ["client p50_max", "client p99_max"] {
        let row = row(&out, name);
        assert!(
            row.contains("no data: no request got an answer") && row.contains("FAIL"),
            "{row}"
        );
    }
}

/// `[[expect.alerts]]` are judged over [run start, run end + `within`]:
/// checks run one after another, and a later check used to look up to the
/// moment it ran. LateAlert/LateAlert2 fire ~20 s after the start, after
/// their `within = "0s"` deadline but before the first (35 s) check ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_expectations_stop_at_their_own_deadline() {
    let service = Service::start().await;
    let fires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 20;
    let monitoring = Monitoring::start(&service, move |rules| {
        let late = format!("vector(time()) > {fires_at}");
        format!("{rules}\n      - alert: LateAlert\n        expr: {late}\n      - alert: LateAlert2\n        expr: {late}\n")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "late",
        "[mix]\nroot = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\n\
         [[expect.alerts]]\nname = \"ItemsServiceDown\"\nstate = \"inactive\"\nwithin = \"35s\"\n\
         [[expect.alerts]]\nname = \"LateAlert\"\nstate = \"firing\"\nwithin = \"0s\"\n\
         [[expect.alerts]]\nname = \"LateAlert2\"\nstate = \"inactive\"\nwithin = \"0s\"\n",
    );
    let (exit, out, err) = run_scenario(&path, &service, Some(&monitoring.prometheus), &[]).await;
    assert_eq!(exit, Exit::CheckFailed, "{out}{err}");
    let early = row(&out, "alert ItemsServiceDown stays inactive");
    assert!(early.contains("PASS"), "{early}");
    let late = row(&out, "alert LateAlert fires");
    assert!(
        late.contains("never fired") && late.contains("FAIL"),
        "{late}"
    );
    let quiet = row(&out, "alert LateAlert2 stays inactive");
    assert!(quiet.contains("PASS"), "{quiet}");
}
