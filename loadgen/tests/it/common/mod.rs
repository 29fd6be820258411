//! Shared fixtures: the service on a real Redis, scenario files in a temp
//! dir, the loadgen binary and in-process runs, and Prometheus +
//! Alertmanager started from the Debian packages with a copy of the rules.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use items_service::testing::{free_port, test_config, RedisServer, TestService};
use loadgen::{cli::Cli, Exit};
use tokio_util::sync::CancellationToken;

/// The repository root (scenarios, rules and dashboards live there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// items-service (with fault injection) on a real Redis.
pub struct Service {
    pub service: TestService,
    pub redis: RedisServer,
}

impl Service {
    pub async fn start() -> Self {
        let redis = RedisServer::start();
        let mut config = test_config(&redis.url());
        config.fault_injection = true;
        config.max_in_flight = 4096;
        Self {
            service: TestService::start(&config).await,
            redis,
        }
    }

    pub fn url(&self) -> String {
        self.service.url()
    }
}

/// Writes `text` as a scenario file in `dir`.
pub fn scenario(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Runs loadgen in-process; returns the exit code, stdout and stderr.
/// `run` serves no metrics unless the test passes `--metrics-listen`
/// (never the default port 9465, which a real run may hold).
pub async fn loadgen(args: &[&str]) -> (Exit, String, String) {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    if args.first() == Some(&"run") && !args.contains(&"--metrics-listen") {
        argv.extend(["--metrics-listen", "off"]);
    }
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = loadgen::main_with(cli.command, CancellationToken::new(), &mut out, &mut err).await;
    (
        exit,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// `loadgen run` of scenario `text` against `service` with `--out` into
/// `dir` (and `--quiet`) plus `args`: the exit, stdout + stderr, and the
/// JSON report.
pub async fn run_with_report(
    dir: &tempfile::TempDir,
    service: &Service,
    text: &str,
    args: &[&str],
) -> (Exit, String, serde_json::Value) {
    let path = scenario(dir, "scenario", text);
    let report = dir.path().join("report.json");
    let url = service.url();
    let mut argv = vec![
        "run",
        path.to_str().unwrap(),
        "--target",
        &url,
        "--out",
        report.to_str().unwrap(),
        "--quiet",
    ];
    argv.extend_from_slice(args);
    let (exit, out, err) = loadgen(&argv).await;
    let report = std::fs::read(&report)
        .map(|bytes| serde_json::from_slice(&bytes).expect("a JSON report"))
        .unwrap_or(serde_json::Value::Null);
    (exit, format!("{out}{err}"), report)
}

/// The real loadgen binary.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .current_dir(repo())
        .env_remove("LOADGEN_TARGET")
        .env_remove("LOADGEN_PROMETHEUS")
        .env("LOADGEN_METRICS_LISTEN", "off");
    command
}

/// A child process stopped by PID when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(program: &str, args: &[String], install: &str) -> Process {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot start {program} ({err}); install it with `apt-get install -y {install}`")
        });
    Process(child)
}

pub async fn wait_ready(url: &str, what: &str) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} not ready at {url} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prometheus (1 s scrapes and evaluations) scraping the service, a
/// redis_exporter and the Alertmanager it sends to (job `alertmanager`, as
/// the shipped dashboard expects), with the repository's rules after `edit`.
pub struct Monitoring {
    pub prometheus: String,
    pub alertmanager: String,
    /// Prometheus' process id (tests stop it to stall scrapes).
    pub prometheus_pid: u32,
    _dir: tempfile::TempDir,
    _processes: Vec<Process>,
}

impl Monitoring {
    pub async fn start(service: &Service, edit_rules: impl Fn(String) -> String) -> Self {
        Self::start_with(service, edit_rules, None).await
    }

    /// Also scrapes loadgen's own metrics at `loadgen` (job `loadgen`).
    pub async fn scraping_loadgen(service: &Service, loadgen: &str) -> Self {
        Self::start_with(service, |rules| rules, Some(loadgen)).await
    }

    /// Waits until Prometheus has scraped `job` once (up or down):
    /// Prometheus hands new targets to its scrapers up to 5 s after start,
    /// and a run must be scraped from its beginning.
    pub async fn until_scraped(&self, job: &str) {
        let prometheus = loadgen::verify::prometheus::Prometheus::new(&self.prometheus);
        let query = format!("up{{job=\"{job}\"}}");
        let started = std::time::Instant::now();
        while prometheus.query(&query, None).await.unwrap().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{job} never scraped"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn start_with(
        service: &Service,
        edit_rules: impl Fn(String) -> String,
        loadgen: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = std::fs::read_to_string(repo().join("prometheus/rules/items-service.yml"))
            .expect("rules");
        // Every group (the 5 s ones and the 30 s long-window SLO group) every
        // second: a short test run sees all recording rules.
        let rules = edit_rules(
            rules
                .replace("interval: 5s", "interval: 1s")
                .replace("interval: 30s", "interval: 1s"),
        );
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let (prom_port, am_port, exporter_port) = (free_port(), free_port(), free_port());
        let service_url = service.url();
        let service_addr = service_url.trim_start_matches("http://");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules}]\n\
             alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]}}\n\
             scrape_configs:\n  - job_name: items-service\n    static_configs: [{{targets: ['{service_addr}']}}]\n  - job_name: redis\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n  - job_name: alertmanager\n    static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n{loadgen_job}",
            rules = dir.path().join("rules.yml").display(),
            loadgen_job = loadgen.map_or(String::new(), |addr| format!(
                "  - job_name: loadgen\n    static_configs: [{{targets: ['{addr}']}}]\n"
            )),
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let am_config = "route: {receiver: drop, group_wait: 1s, group_interval: 5s}\nreceivers: [{name: drop}]\n";
        std::fs::write(dir.path().join("alertmanager.yml"), am_config).unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let exporter = spawn(
            "prometheus-redis-exporter",
            &[
                "-redis.addr".into(),
                service.redis.url(),
                "-web.listen-address".into(),
                format!("127.0.0.1:{exporter_port}"),
            ],
            "prometheus-redis-exporter",
        );
        let alertmanager = spawn(
            "prometheus-alertmanager",
            &[
                format!("--config.file={}", path("alertmanager.yml")),
                format!("--storage.path={}", path("am-data")),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=".into(),
            ],
            "prometheus-alertmanager",
        );
        let prometheus = spawn(
            "prometheus",
            &[
                format!("--config.file={}", path("prometheus.yml")),
                format!("--storage.tsdb.path={}", path("prom-data")),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ],
            "prometheus",
        );
        let (prometheus_url, alertmanager_url) = (
            format!("http://127.0.0.1:{prom_port}"),
            format!("http://127.0.0.1:{am_port}"),
        );
        wait_ready(&format!("{prometheus_url}/-/ready"), "prometheus").await;
        wait_ready(&format!("{alertmanager_url}/-/ready"), "alertmanager").await;
        Self {
            prometheus: prometheus_url,
            alertmanager: alertmanager_url,
            prometheus_pid: prometheus.0.id(),
            _dir: dir,
            _processes: vec![prometheus, alertmanager, exporter],
        }
    }
}

/// The rules with an always-firing Watchdog alert (SPEC §6) if they lack
/// one, so the alerts panel has data whatever else fires.
pub fn with_watchdog(rules: String) -> String {
    if rules.contains("alert: Watchdog") {
        return rules;
    }
    format!(
        "{rules}\n      - alert: Watchdog\n        expr: vector(1)\n        labels: {{severity: none, family: meta}}\n"
    )
}

/// `loadgen run SCENARIO --target SERVICE [--prometheus URL] EXTRA...`.
pub async fn run_scenario(
    path: &Path,
    service: &Service,
    prometheus: Option<&str>,
    extra: &[&str],
) -> (Exit, String, String) {
    let url = service.url();
    let mut args = vec!["run", path.to_str().unwrap(), "--target", &url];
    if let Some(prometheus) = prometheus {
        args.extend(["--prometheus", prometheus]);
    }
    args.extend_from_slice(extra);
    loadgen(&args).await
}

/// `loadgen verify-dashboard --prometheus URL ARGS...` until it passes
/// (recording rules need a couple of evaluations after the traffic);
/// returns the last failing output, empty once it passed.
pub async fn dashboard_until_pass(prometheus: &str, args: &[&str]) -> String {
    let mut argv = vec!["verify-dashboard", "--prometheus", prometheus];
    argv.extend_from_slice(args);
    let mut last = String::new();
    for _ in 0..30 {
        let (exit, out, err) = loadgen(&argv).await;
        if exit == Exit::Pass {
            assert!(out.contains("PASS: all "), "{out}");
            return String::new();
        }
        last = format!("{out}{err}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    last
}
