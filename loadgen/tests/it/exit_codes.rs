//! Exit codes of SPEC §8 through the real binary: 0, 1, 2 and 130.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use crate::common::{binary, scenario, Service};

const TINY: &str = "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"1s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_when_every_check_passes_one_when_one_fails() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = scenario(
        &dir,
        "pass",
        &format!("{TINY}[expect.client]\nerror_ratio_max = 0.0\n"),
    );
    let output = binary()
        .arg("run")
        .arg(&pass)
        .args(["--target", &service.url()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let impossible = scenario(
        &dir,
        "impossible",
        &format!("{TINY}[expect.client]\np99_max = \"1us\"\n"),
    );
    let output = binary()
        .arg("run")
        .arg(&impossible)
        .args(["--target", &service.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL: 1 of 3 checks failed: client p99_max"),
        "{stdout}"
    );
}

#[tokio::test]
async fn two_for_an_unreachable_target_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "tiny", TINY);
    let port = items_service::testing::free_port();
    let started = Instant::now();
    let output = binary()
        .arg("run")
        .arg(&path)
        .args(["--target", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach target http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn two_for_usage_errors() {
    let output = binary().args(["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = binary().args(["frobnicate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = binary().args(["--help"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Exit codes: 0 all checks passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thirty_on_ctrl_c_with_a_partial_summary() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let long = scenario(
        &dir,
        "long",
        "[keyspace]\npreload = 5\n[mix]\nget_hit = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"60s\"\n",
    );
    for signal in ["-INT", "-TERM"] {
        let out = dir.path().join(format!("{signal}.json"));
        let child = binary()
            .arg("run")
            .arg(&long)
            .args(["--target", &service.url(), "--out", out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(130), "{signal}: {stdout}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow to stop: {:?}",
            started.elapsed()
        );
        assert!(
            stdout.contains("interrupted: partial results above"),
            "{stdout}"
        );
        assert!(stdout.contains("│ get_hit"), "no partial summary: {stdout}");
        // SIGTERM (Kubernetes stopping a pod) ends like Ctrl-C: a report.
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(report["summary"]["interrupted"], true, "{signal}");
    }
}

/// An unwritable `--html` or `--out` path fails the run before any
/// request (here: before even reaching the absent target).
#[tokio::test]
async fn two_for_an_unwritable_report_path_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(&dir, "tiny", TINY);
    let port = items_service::testing::free_port();
    for flag in ["--html", "--out"] {
        let missing = dir.path().join("no-such-dir").join("report");
        let output = binary()
            .arg("run")
            .arg(&path)
            .args(["--target", &format!("http://127.0.0.1:{port}")])
            .arg(flag)
            .arg(&missing)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot write the report to {}", missing.display())),
            "{flag}: {stderr}"
        );
    }
}
