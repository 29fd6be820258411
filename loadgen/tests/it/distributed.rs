//! Distributed runs against a real items-service: three `run --shard`
//! processes' worth of in-process runs with one `--start-at`, merged into
//! the single run (exact plan, exact reconciliation, schema-valid reports),
//! and every way a shard set or a shard can be refused.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{loadgen, scenario, Monitoring, Service};

/// Open loop (200/s × 2 s = 400 arrivals) then closed loop (2 VUs over 3
/// shards: one shard has none and only keeps time).
const SCENARIO: &str = r#"
seed = 9
[keyspace]
preload = 60
value_bytes = 16
distribution = "zipf"
zipf_exponent = 1.0
[mix]
get_hit = 60
get_miss = 10
put = 10
delete = 1
list = 5
root = 5
[[phases]]
name = "open"
executor = "constant-arrival-rate"
rate = 200
duration = "2s"
[[phases]]
name = "closed"
executor = "constant-vus"
vus = 2
duration = "1s"
think_time = "20ms"
[expect.client]
error_ratio_max = 0.0
"#;

fn json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_schema_valid(report: &Value) {
    let schema: Value = serde_json::from_str(loadgen::report::SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// The report paths of `count` shards in `dir`.
fn shard_outs(dir: &tempfile::TempDir, count: usize) -> Vec<String> {
    (1..=count)
        .map(|i| {
            dir.path()
                .join(format!("shard-{i}.json"))
                .display()
                .to_string()
        })
        .collect()
}

/// Runs `outs.len()` shards of `path` concurrently with one `--start-at`.
/// The preloads must be done a second before the start; on a loaded
/// machine a short lead is too short, which the shards report (exit 2
/// "after its deadline") — then the run is repeated with more lead.
async fn run_shards(
    path: &str,
    url: &str,
    outs: &[String],
) -> Vec<(loadgen::Exit, String, String)> {
    let count = outs.len();
    let mut leads = [12, 30, 60].into_iter();
    loop {
        let lead = leads.next().expect("the shards never started together");
        let start = humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(lead))
            .to_string();
        let shard = |i: usize| {
            let spec = format!("{i}/{count}");
            let args = [
                "run",
                path,
                "--target",
                url,
                "--shard",
                &spec,
                "--start-at",
                &start,
                "--out",
                &outs[i - 1],
                "-q",
            ]
            .map(str::to_owned);
            async move { loadgen(&args.each_ref().map(String::as_str)).await }
        };
        let results = futures::future::join_all((1..=count).map(shard)).await;
        if !results
            .iter()
            .any(|(_, _, err)| err.contains("after its deadline"))
        {
            return results;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_merge_into_the_single_run() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "sharded", SCENARIO);
    let outs = shard_outs(&dir, 3);
    let results = run_shards(path.to_str().unwrap(), &service.url(), &outs).await;
    for (exit, out, err) in &results {
        assert_eq!(*exit, loadgen::Exit::Pass, "{out}\n{err}");
        assert!(out.contains("deferred to `loadgen merge`"), "{out}");
        assert!(
            out.contains("DONE: checks deferred") && !out.contains("PASS"),
            "a shard passes nothing: {out}"
        );
    }

    let reports: Vec<Value> = outs.iter().map(|o| json(o.as_ref())).collect();
    let mut scheduled = 0;
    for (i, report) in reports.iter().enumerate() {
        assert_schema_valid(report);
        assert_eq!(report["shard"]["shard"], i as u64 + 1);
        assert_eq!(
            report["checks"],
            Value::Array(vec![]),
            "a shard checks nothing"
        );
        scheduled += report["summary"]["phases"][0]["scheduled"]
            .as_u64()
            .unwrap();
        // Each shard's first phase started at the common instant.
        let started = report["shard"]["measurements"]["phases"][0]["started_at_unix_ms"]
            .as_u64()
            .unwrap();
        let start_at = report["shard"]["start_at_unix_ms"].as_u64().unwrap();
        assert!(
            started >= start_at && started - start_at < 250,
            "{started} vs {start_at}"
        );
    }
    assert_eq!(scheduled, 400, "the shards' arrivals add up to the plan");

    let merged_path = dir.path().join("merged.json");
    let merged_arg = merged_path.display().to_string();
    let mut args = vec!["merge", "--out", &merged_arg];
    args.extend(outs.iter().map(String::as_str));
    let (exit, out, err) = loadgen(&args).await;
    assert_eq!(exit, loadgen::Exit::Pass, "{out}\n{err}");
    assert!(out.contains("3 shards merged"), "{out}");
    assert!(out.contains("per-second p50/p99"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("reconcile server counts with client") && l.contains("PASS")),
        "{out}"
    );
    let merged = json(&merged_path);
    assert_schema_valid(&merged);
    assert_eq!(merged["summary"]["phases"][0]["scheduled"], 400);
    let completed: u64 = reports
        .iter()
        .map(|r| r["summary"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(merged["summary"]["requests"], completed);
    assert_eq!(merged["shards"].as_array().unwrap().len(), 3);
    assert_eq!(merged["passed"], true);

    refusals(&dir, &outs).await;
}

/// Incomplete, duplicated and mixed sets exit 2 naming the problem.
async fn refusals(dir: &tempfile::TempDir, outs: &[String]) {
    let refused = |args: Vec<String>, needle: &'static str| async move {
        let mut argv = vec!["merge".to_owned()];
        argv.extend(args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (exit, out, err) = loadgen(&argv).await;
        assert_eq!(exit, loadgen::Exit::Error, "{needle}: {out}\n{err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    };
    refused(outs[..2].to_vec(), "missing shard 3 of 3").await;
    refused(
        vec![
            outs[0].clone(),
            outs[0].clone(),
            outs[1].clone(),
            outs[2].clone(),
        ],
        "shard 1 appears 2 times",
    )
    .await;
    // The third report, edited: another seed, another shard count.
    let other = dir.path().join("other.json");
    for (field, value, needle) in [
        ("seed", 10, "seed 10 differs"),
        ("shards", 4, "shard count 4 differs"),
    ] {
        let mut edited = json(outs[2].as_ref());
        edited["shard"][field] = value.into();
        std::fs::write(&other, edited.to_string()).unwrap();
        refused(
            vec![
                outs[0].clone(),
                outs[1].clone(),
                other.display().to_string(),
            ],
            needle,
        )
        .await;
    }
    // Edited reports first in the list (their fields lead the comparison):
    // a huge count is refused before anything is sized by it, the embedded
    // scenario must match its hash, the versions must agree, and parts that
    // name their operations differently never merge by position.
    let mut operations = json(outs[0].as_ref());
    operations["shard"]["measurements"]["operations"][0]["name"] = "get_miss".into();
    let mut toml = json(outs[0].as_ref());
    toml["shard"]["scenario_toml"] = SCENARIO
        .replace("error_ratio_max = 0.0", "error_ratio_max = 1.0")
        .into();
    let edits: [(&str, Value, &str); 4] = [
        (
            "shards",
            1_000_000_000_u64.into(),
            "shard count 1000000000 is outside 1..=10000",
        ),
        ("loadgen_version", "0.0.1".into(), "loadgen version"),
        (
            "scenario_toml",
            toml["shard"]["scenario_toml"].clone(),
            "does not match its scenario_hash",
        ),
        (
            "measurements",
            operations["shard"]["measurements"].clone(),
            "different operations or phases",
        ),
    ];
    for (field, value, needle) in edits {
        let mut edited = json(outs[0].as_ref());
        edited["shard"][field] = value;
        std::fs::write(&other, edited.to_string()).unwrap();
        let mut args = vec![other.display().to_string()];
        args.extend(outs[1..].iter().cloned());
        refused(args, needle).await;
    }
    // The merged run renders as the single-run HTML report.
    let html = dir.path().join("merged.html");
    let mut argv = vec!["merge", "--quiet", "--html", html.to_str().unwrap()];
    argv.extend(outs.iter().map(String::as_str));
    let (exit, out, err) = loadgen(&argv).await;
    assert_eq!(exit, loadgen::Exit::Pass, "{out}\n{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<html") && page.contains("uPlot"),
        "not the report page"
    );
    let mut single = json(outs[0].as_ref());
    single.as_object_mut().unwrap().remove("shard");
    std::fs::write(&other, single.to_string()).unwrap();
    refused(vec![other.display().to_string()], "no \"shard\" section").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_ready_after_the_start_time_exits_2() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "late",
        "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n",
    );
    let out = dir.path().join("late.json");
    let (path, out_arg, url) = (path.to_str().unwrap(), out.to_str().unwrap(), service.url());
    for (start, needle) in [
        (Some("+0s"), "was ready at"),
        (
            Some("2001-01-01T00:00:00Z"),
            "give --start-at more lead time",
        ),
        (Some("soon"), "neither RFC 3339"),
        // Several shards need a common start.
        (None, "needs --start-at"),
    ] {
        let mut argv = vec![
            "run", path, "--target", &url, "--shard", "2/3", "--out", out_arg,
        ];
        argv.extend(
            start
                .map(|start| ["--start-at", start])
                .into_iter()
                .flatten(),
        );
        let (exit, _, err) = loadgen(&argv).await;
        assert_eq!(exit, loadgen::Exit::Error, "{start:?}: {err}");
        assert!(err.contains(needle), "{start:?}: {err}");
        assert!(!out.exists(), "a refused shard writes no report");
    }
    // An unwritable --out is refused before the preload and the load, not
    // after the run (the scenario would take a minute).
    let long = scenario(
        &dir,
        "long",
        "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"60s\"\n",
    );
    let missing = dir.path().join("no-such-dir").join("shard-1.json");
    let started = std::time::Instant::now();
    let (exit, _, err) = loadgen(&[
        "run",
        long.to_str().unwrap(),
        "--target",
        &url,
        "--shard",
        "1/1",
        "--out",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_eq!(exit, loadgen::Exit::Error, "{err}");
    assert!(err.contains("cannot write the report to"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// A slow warm-up then the main phase, split over more shards than the
/// warm-up has arrivals: shards with few or no warm-up arrivals must still
/// start `main` (and the closed tail) at the single process's instant —
/// start + 3 s, start + 4 s — or the union does not offer `main`'s rate.
const PHASES: &str = r#"
seed = 4
[mix]
root = 1
[[phases]]
name = "warmup"
executor = "constant-arrival-rate"
rate = 1
duration = "3s"
[[phases]]
name = "main"
executor = "constant-arrival-rate"
rate = 60
duration = "1s"
[[phases]]
name = "tail"
executor = "constant-vus"
vus = 1
duration = "500ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_starts_every_phase_on_the_global_timeline() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "phases", PHASES);
    let outs = shard_outs(&dir, 8);
    let results = run_shards(path.to_str().unwrap(), &service.url(), &outs).await;
    for (exit, out, err) in &results {
        assert_eq!(*exit, loadgen::Exit::Pass, "{out}\n{err}");
    }
    // Generous for a loaded machine; without the global timeline shards
    // without warm-up arrivals start `main` up to 3 s early.
    let tolerance = 400;
    let mut main_requests = 0;
    for out in &outs {
        let report = json(out.as_ref());
        let shard = &report["shard"];
        let start_at = shard["start_at_unix_ms"].as_u64().unwrap();
        let phases = shard["measurements"]["phases"].as_array().unwrap();
        for (phase, offset) in [(1, 3000), (2, 4000)] {
            let started = phases[phase]["started_at_unix_ms"].as_u64().unwrap();
            let planned = start_at + offset;
            assert!(
                started >= planned && started - planned < tolerance,
                "shard {}: phase {phase} started at {started}, planned {planned}",
                shard["shard"]
            );
        }
        main_requests += phases[1]["completed"].as_u64().unwrap();
    }
    assert_eq!(main_requests, 60, "the union sends main's 60 arrivals");
}

/// Root requests only, after a preload of POSTs; Prometheus must see the
/// run's 100 requests — not the preload before `--start-at`, not traffic
/// after the last shard ended (however late the merge runs).
const WINDOWED: &str = r#"
seed = 5
[keyspace]
preload = 400
[mix]
root = 1
[[phases]]
executor = "constant-arrival-rate"
rate = 50
duration = "2s"
[[expect.promql]]
name = "root requests in the window"
query = 'sum(increase(http_requests_total{job="items-service",endpoint="/"}[$__range]))'
min = 90
max = 110
[[expect.promql]]
name = "no preload POST in the window"
query = 'sum(increase(http_requests_total{job="items-service",endpoint="/items",method="POST"}[$__range]))'
max = 0.5
"#;

const ROOT: &str = "sum(http_requests_total{job=\"items-service\",endpoint=\"/\"})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_window_is_the_run_not_the_preload_nor_what_came_after() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "windowed", WINDOWED);
    let prometheus = loadgen::verify::prometheus::Prometheus::new(&monitoring.prometheus);
    let until = |query: &'static str, done: Box<dyn Fn(f64) -> bool>| {
        let prometheus = &prometheus;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let seen = prometheus.query(query, None).await.unwrap();
                if seen.first().is_some_and(|s| done(s.value)) {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{query}: {seen:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The root series must exist before the window (increase() cannot
    // count a series' first sample).
    let http = reqwest::Client::new();
    http.get(service.url()).send().await.unwrap();
    until(ROOT, Box::new(|seen| seen >= 1.0)).await;
    let outs = shard_outs(&dir, 2);
    let results = run_shards(path.to_str().unwrap(), &service.url(), &outs).await;
    for (exit, out, err) in &results {
        assert_eq!(*exit, loadgen::Exit::Pass, "{out}\n{err}");
    }
    // Someone else's traffic after the run (after the first scrape past the
    // last shard's end, which closes the window), scraped before the merge.
    let end = outs
        .iter()
        .map(|out| {
            json(out.as_ref())["shard"]["measurements"]["ended_at_unix_ms"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap() as f64
        / 1000.0;
    until(
        "max(timestamp(up{job=\"items-service\"}))",
        Box::new(move |at| at > end),
    )
    .await;
    for _ in 0..300 {
        http.get(service.url()).send().await.unwrap();
    }
    until(ROOT, Box::new(|seen| seen >= 401.0)).await;
    let mut args = vec!["merge", "--prometheus", &monitoring.prometheus];
    args.extend(outs.iter().map(String::as_str));
    let (exit, out, err) = loadgen(&args).await;
    assert_eq!(exit, loadgen::Exit::Pass, "{out}\n{err}");
    for check in [
        "root requests in the window",
        "no preload POST in the window",
    ] {
        assert!(
            out.lines().any(|l| l.contains(check) && l.contains("PASS")),
            "{check}: {out}"
        );
    }
}

/// `max_in_flight = 4` split over 4 shards: one permit each, so a shard
/// serves at most one 200 ms request at a time — at most 2 s / 200 ms + 1
/// = 11 of its arrivals, however fast the machine (before the split, each
/// shard had 4 permits and served ~40, the union 4× the scenario's cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_gets_its_part_of_max_in_flight() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        &dir,
        "capped",
        "[mix]\nfault = 1\n[fault]\nstatus = 503\ndelay = \"200ms\"\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 200\nduration = \"2s\"\nmax_in_flight = 4\n",
    );
    let out = dir.path().join("shard-1.json");
    let (exit, stdout, err) = loadgen(&[
        "run",
        path.to_str().unwrap(),
        "--target",
        &service.url(),
        "--shard",
        "1/4",
        "--start-at",
        "+3s",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(exit, loadgen::Exit::Pass, "{stdout}\n{err}");
    let phase = &json(&out)["summary"]["phases"][0];
    assert_eq!(phase["scheduled"], 100);
    let completed = phase["completed"].as_u64().unwrap();
    assert!(
        completed <= 11,
        "{completed} served with one permit: {phase}"
    );
}
