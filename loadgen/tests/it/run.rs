//! `loadgen run` against a real items-service: exact counts, rate accuracy,
//! drops under a slow target, determinism, reconciliation and the report.

use std::collections::BTreeMap;

use loadgen::{
    engine::executor::stream_rng,
    engine::request::RequestGen,
    runner::{self, RunOptions},
    verify::server::ServerVerifier,
    Exit,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{run_with_report, Service};

const FIXED: &str = r#"
seed = 5
[keyspace]
preload = 100
value_bytes = 32
[mix]
get_hit = 50
get_miss = 20
put = 10
delete = 5
list = 5
root = 10
[[phases]]
executor = "constant-arrival-rate"
rate = 200
duration = "2s"
"#;

async fn run_plan(text: &str, target: &str) -> (runner::RunResult, String) {
    let plan = loadgen::scenario::parse("test.toml", text, "test").expect("valid scenario");
    let options = RunOptions {
        target: target.into(),
        prometheus: "http://127.0.0.1:1".into(),
        seed: None,
        quiet: false,
        ..RunOptions::default()
    };
    let mut verifier = ServerVerifier::new(target, &options.prometheus, plan.expect.clone());
    let mut out = Vec::new();
    let result = runner::run(
        plan,
        &options,
        &mut verifier,
        CancellationToken::new(),
        &mut out,
    )
    .await
    .expect("run");
    (result, String::from_utf8(out).unwrap())
}

fn op_counts(result: &runner::RunResult) -> BTreeMap<String, u64> {
    result
        .summary
        .operations
        .iter()
        .map(|op| (op.name.clone(), op.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_per_operation_are_exactly_as_planned() {
    let service = Service::start().await;
    let (result, out) = run_plan(FIXED, &service.url()).await;
    assert_eq!(result.exit, Exit::Pass, "{out}");

    // The same generator and seed, replayed: the plan's own op sequence.
    let plan = loadgen::scenario::parse("t", FIXED, "t").unwrap();
    let generator = RequestGen::new(&plan, 0);
    let mut rng = stream_rng(plan.seed, 0, 0);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..400 {
        *expected
            .entry(generator.next(&mut rng).op.name().to_owned())
            .or_default() += 1;
    }
    assert_eq!(op_counts(&result), expected);
    assert_eq!(result.summary.requests, 400);
    assert_eq!(result.summary.errors, 0, "{out}");
    for op in &result.summary.operations {
        let status: u16 = match op.name.as_str() {
            "get_miss" => 404,
            "put" => 201,
            "delete" => 204,
            _ => 200,
        };
        assert_eq!(
            op.statuses,
            BTreeMap::from([(status.to_string(), op.count)]),
            "{}",
            op.name
        );
    }
    let reconcile = result
        .checks
        .iter()
        .find(|c| c.name.starts_with("reconcile"))
        .expect("reconciliation ran");
    assert!(reconcile.passed, "{reconcile:?}");
    assert_eq!(
        reconcile.observed,
        "server 400, client 400 (0 timeouts matched by 499, 0 tolerated)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_gives_the_same_run() {
    let service = Service::start().await;
    let (first, _) = run_plan(FIXED, &service.url()).await;
    let (second, _) = run_plan(FIXED, &service.url()).await;
    assert_eq!(op_counts(&first), op_counts(&second));
    let (other, _) = run_plan(&FIXED.replace("seed = 5", "seed = 6"), &service.url()).await;
    assert_ne!(op_counts(&first), op_counts(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_rate_is_within_one_percent() {
    let service = Service::start().await;
    let text = "[keyspace]\npreload = 10\n[mix]\nroot = 1\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 500\nduration = \"4s\"\n[expect.client]\nachieved_rate_min_ratio = 0.99\n";
    let (result, out) = run_plan(text, &service.url()).await;
    let phase = &result.summary.phases[0];
    assert_eq!(phase.scheduled, Some(2000));
    assert_eq!(phase.completed, 2000, "{out}");
    assert_eq!(phase.dropped, 0);
    let error = (phase.achieved_rate - 500.0).abs() / 500.0;
    assert!(error < 0.01, "achieved {:.2}/s: {out}", phase.achieved_rate);
    assert_eq!(result.exit, Exit::Pass, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_shows_in_latency_and_drops() {
    let service = Service::start().await;
    // Every request is delayed 200 ms by the service; 4 may be in flight, so
    // at most 20/s can be served of the 50/s scheduled: the rest are dropped,
    // never queued and sent late.
    let text = "[keyspace]\npreload = 10\n[mix]\nfault = 1\n[fault]\nstatus = 503\ndelay = \"200ms\"\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"2s\"\nmax_in_flight = 4\n[expect.client]\nachieved_rate_min_ratio = 0.99\nerror_ratio_max = 0.0\n";
    let (result, out) = run_plan(text, &service.url()).await;
    let phase = &result.summary.phases[0];
    assert_eq!(phase.scheduled, Some(100));
    assert_eq!(phase.completed + phase.dropped, 100, "{out}");
    assert!(phase.dropped >= 50, "only {} dropped: {out}", phase.dropped);
    assert_eq!(
        result.summary.errors, 0,
        "injected 503s are expected: {out}"
    );
    let latency = &result.summary.latency;
    assert!(
        latency.p50_ms >= 200.0,
        "latency p50 {} ms below the injected delay",
        latency.p50_ms
    );
    assert!(latency.p50_ms >= result.summary.service_time.p50_ms);
    let lag = result
        .summary
        .send_lag
        .as_ref()
        .expect("open loop has a send lag");
    assert!(lag.p99_ms < 50.0, "sends were late: {lag:?}");
    assert_eq!(
        result.exit,
        Exit::CheckFailed,
        "dropped requests must fail achieved_rate_min_ratio: {out}"
    );
    // Drops are failures of the error ratio too (they used to pass it).
    assert!(
        out.contains(
            "FAIL: 2 of 3 checks failed: client error_ratio_max, client achieved_rate_min_ratio"
        ),
        "{out}"
    );
    let ratio = result
        .checks
        .iter()
        .find(|c| c.name == "client error_ratio_max")
        .unwrap();
    assert!(
        ratio
            .observed
            .contains(&format!("0 errors + {} dropped of 100", phase.dropped)),
        "{ratio:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_executors_run_their_vus() {
    let service = Service::start().await;
    let text = "[keyspace]\npreload = 10\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 4\nduration = \"1s\"\nthink_time = \"10ms\"\n[[phases]]\nexecutor = \"ramping-vus\"\nstages = [{ target = 6, duration = \"1s\" }, { target = 0, duration = \"500ms\" }]\n";
    let (result, out) = run_plan(text, &service.url()).await;
    assert_eq!(result.exit, Exit::Pass, "{out}");
    let [constant, ramping] = &result.summary.phases[..] else {
        panic!("two phases")
    };
    // 4 VUs with 10 ms think time: at most ~400 requests in 1 s, and many.
    assert!(
        (100..=420).contains(&constant.completed),
        "{}",
        constant.completed
    );
    assert!(ramping.completed > 50, "{}", ramping.completed);
    assert_eq!(constant.scheduled, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_catches_a_request_behind_loadgens_back() {
    let service = Service::start().await;
    let text = "[keyspace]\npreload = 10\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"2s\"\n";
    let url = service.url();
    let sneaky = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let http = reqwest::Client::new();
        for _ in 0..3 {
            http.get(format!("{url}/")).send().await.unwrap();
        }
    });
    let (result, out) = run_plan(text, &service.url()).await;
    sneaky.await.unwrap();
    assert_eq!(result.exit, Exit::CheckFailed, "{out}");
    let reconcile = result
        .checks
        .iter()
        .find(|c| c.name.starts_with("reconcile"))
        .unwrap();
    assert!(!reconcile.passed);
    assert!(out.contains("server and client counts differ"), "{out}");
    let row: Vec<&str> = out
        .lines()
        .find(|line| line.ends_with("+3 │") || line.contains("+3"))
        .map(|line| {
            line.split(['│', '┆'])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_else(|| panic!("no diff row: {out}"));
    assert_eq!(row, ["GET", "/", "200", "3", "0", "+3"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_matches_its_schema() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (exit, out, report) = run_with_report(&dir, &service, FIXED, &[]).await;
    assert_eq!(exit, Exit::Pass, "{out}");
    let schema: Value = serde_json::from_str(loadgen::report::SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["summary"]["requests"], 400);
    assert_eq!(report["passed"], true);
    // The schema is strict: a report with an unknown field does not validate.
    let mut broken = report.clone();
    broken["summary"]["surprise"] = Value::from(1);
    assert!(!validator.is_valid(&broken));
}
