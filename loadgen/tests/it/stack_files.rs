//! The Compose file and monitoring configs, checked without Docker (there is
//! no Docker engine on CI: the file is parsed, not run): every mounted path
//! exists, every service has a healthcheck, images are pinned, ports are
//! bound to 127.0.0.1, Grafana's password is a secret file, and the
//! behaviours issue 14 asked for (nothing waits for another service to be
//! healthy, drain time, no Redis saves, no Alertmanager cluster, loadgen on
//! the host reachable from the containers, Prometheus keeping the 30 days
//! the SLO error budget is computed over, natively and in Compose alike).

use serde_yaml::Value;

use crate::common::repo;

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("compose/docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn every_service_is_healthchecked_pinned_and_local() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    for expected in [
        "redis",
        "items-service",
        "redis-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(names.contains(&expected), "missing service {expected}");
    }
    for (name, service) in services {
        let name = name.as_str().unwrap();
        assert!(
            service["healthcheck"]["test"].is_sequence(),
            "{name} has no healthcheck"
        );
        let image = service["image"].as_str().unwrap_or_default();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{name}: image {image:?} is not pinned"
        );
        for port in service["ports"].as_sequence().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name}: port {port:?} not bound to 127.0.0.1"
            );
        }
    }
}

/// Nothing blocks on another service being healthy: Prometheus must run
/// (and alert) precisely when what it watches is unhealthy, the service
/// heals itself when Redis comes later, the exporter reports redis_up 0
/// without Redis, and Grafana only needs Prometheus started.
#[test]
fn nothing_waits_for_another_service_to_be_healthy() {
    let compose = compose();
    let mut edges = Vec::new();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        for (dependency, how) in service["depends_on"].as_mapping().into_iter().flatten() {
            let dependency = dependency.as_str().unwrap();
            assert_eq!(
                how["condition"], "service_started",
                "{name} -> {dependency}"
            );
            edges.push(format!("{name}->{dependency}"));
        }
    }
    for expected in [
        "items-service->redis",
        "redis-exporter->redis",
        "prometheus->items-service",
        "grafana->prometheus",
    ] {
        assert!(edges.iter().any(|e| e == expected), "{expected}: {edges:?}");
    }
}

fn command(service: &Value) -> Vec<&str> {
    service["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

#[test]
fn grafana_password_is_a_secret_file_and_down_needs_no_environment() {
    let text = std::fs::read_to_string(repo().join("compose/docker-compose.yml")).unwrap();
    // `${VAR:?message}` makes every command, `down` included, fail unset.
    assert!(
        !text.contains(":?"),
        "a required variable is left in the file"
    );
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let environment = grafana["environment"].as_mapping().unwrap();
    assert!(
        !environment.contains_key("GF_SECURITY_ADMIN_PASSWORD"),
        "password in the environment"
    );
    let secret = grafana["secrets"][0].as_str().unwrap();
    assert_eq!(
        grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"],
        format!("/run/secrets/{secret}").as_str()
    );
    let file = compose["secrets"][secret]["file"].as_str().unwrap();
    assert!(file.contains("secrets/grafana-admin-password"), "{file}");
    let ignore = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "/compose/secrets/"),
        "secret not ignored"
    );
}

#[test]
fn compose_matches_the_native_stack_behaviour() {
    let compose = compose();
    let services = &compose["services"];
    let service = &services["items-service"];
    let grace = service["stop_grace_period"].as_str().unwrap();
    let seconds: u64 = grace.strip_suffix('s').unwrap().parse().unwrap();
    assert!(seconds > 10, "stop_grace_period {grace} <= the 10 s drain");
    let probe = format!("{:?}", service["healthcheck"]["test"]);
    assert!(
        probe.contains("/healthz") && !probe.contains("/readyz"),
        "{probe}"
    );
    let dockerfile = std::fs::read_to_string(repo().join("compose/Dockerfile")).unwrap();
    let healthcheck = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .unwrap();
    assert!(healthcheck.contains("/healthz"), "{healthcheck}");

    let redis = command(&services["redis"]);
    let save = redis.iter().position(|a| *a == "--save").expect("--save");
    assert_eq!(
        redis[save + 1],
        "",
        "Redis saves in the background: {redis:?}"
    );
    assert!(!redis.windows(2).any(|w| w == ["--appendonly", "yes"]));

    let alertmanager = command(&services["alertmanager"]);
    assert!(
        alertmanager.contains(&"--cluster.listen-address="),
        "clustering on: {alertmanager:?}"
    );
}

#[test]
fn containers_reach_loadgen_on_the_host() {
    let compose = compose();
    for name in ["alertmanager", "prometheus"] {
        let hosts = format!("{:?}", compose["services"][name]["extra_hosts"]);
        assert!(
            hosts.contains("host.docker.internal:host-gateway"),
            "{name}: {hosts}"
        );
    }
    let text = std::fs::read_to_string(repo().join("prometheus/alertmanager.yml")).unwrap();
    let config: Value = serde_yaml::from_str(&text).unwrap();
    let webhook = config["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "webhook")
        .unwrap();
    assert_eq!(
        webhook["webhook_configs"][0]["url"],
        "http://host.docker.internal:9099/alerts"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(r#"--webhook-listen "$bridge:9099""#),
        "README does not show the verify-alerts command for Compose"
    );
}

#[test]
fn every_mounted_path_exists() {
    let compose = compose();
    let base = repo().join("compose");
    let volumes = compose["volumes"].as_mapping().expect("named volumes");
    let mut checked = 0;
    for (name, service) in compose["services"].as_mapping().unwrap() {
        if let Some(build) = service.get("build") {
            let context = base.join(build["context"].as_str().unwrap());
            assert!(
                context
                    .join(build["dockerfile"].as_str().unwrap())
                    .is_file(),
                "{name:?}: Dockerfile missing"
            );
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    base.join(source).exists(),
                    "{name:?} mounts missing path {source}"
                );
                checked += 1;
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name:?} uses undeclared volume {source}"
                );
            }
        }
    }
    assert!(checked >= 5, "only {checked} bind mounts checked");
}

#[test]
fn prometheus_scrapes_the_exporter_not_redis() {
    let text = std::fs::read_to_string(repo().join("prometheus/prometheus.yml")).unwrap();
    let config: Value = serde_yaml::from_str(&text).unwrap();
    let jobs: Vec<(&str, &str)> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|job| {
            (
                job["job_name"].as_str().unwrap(),
                job["static_configs"][0]["targets"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert!(jobs.contains(&("redis", "redis-exporter:9121")), "{jobs:?}");
    assert!(jobs.contains(&("items-service", "items-service:9000")));
    assert!(
        jobs.contains(&("loadgen", "host.docker.internal:9465")),
        "{jobs:?}"
    );
    assert!(
        jobs.iter().all(|(_, target)| !target.ends_with(":6379")),
        "Redis scraped directly: {jobs:?}"
    );
    let service = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "items-service")
        .unwrap();
    assert_eq!(service["scrape_interval"], "5s");
    assert_eq!(config["global"]["evaluation_interval"], "5s");
}

#[test]
fn grafana_datasource_matches_the_scrape_interval() {
    let text =
        std::fs::read_to_string(repo().join("grafana/provisioning/datasources/prometheus.yml"))
            .unwrap();
    let config: Value = serde_yaml::from_str(&text).unwrap();
    let datasource = &config["datasources"][0];
    assert_eq!(datasource["uid"], "prometheus");
    assert_eq!(datasource["jsonData"]["timeInterval"], "5s");
}

/// The value of `flag` in an argument list, as `--flag=value` or
/// `--flag value`.
fn flag_value(args: &[&str], flag: &str) -> String {
    let prefixed = format!("{flag}=");
    let at = args
        .iter()
        .position(|a| *a == flag || a.starts_with(&prefixed))
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    match args[at].strip_prefix(&prefixed) {
        Some(value) => value.to_owned(),
        None => args[at + 1].to_owned(),
    }
}

/// A Prometheus duration made of whole days or weeks or years, in days.
fn days(duration: &str) -> u64 {
    let (number, unit) = duration.split_at(duration.len() - 1);
    let number: u64 = number.parse().unwrap_or_else(|_| panic!("{duration}"));
    match unit {
        "d" => number,
        "w" => number * 7,
        "y" => number * 365,
        _ => panic!("{duration}: not in days, weeks or years"),
    }
}

/// The SLO rules compute the remaining error budget over 30 days: both
/// stacks keep at least that much, bounded by the same size.
#[test]
fn prometheus_keeps_the_slo_window_natively_and_in_compose() {
    let compose = compose();
    let compose_args = command(&compose["services"]["prometheus"]);
    let script = std::fs::read_to_string(repo().join("scripts/stack")).unwrap();
    let native_args: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|a| !a.is_empty())
        .collect();
    for flag in [
        "--storage.tsdb.retention.time",
        "--storage.tsdb.retention.size",
    ] {
        assert_eq!(
            flag_value(&compose_args, flag),
            flag_value(&native_args, flag),
            "{flag}: Compose and scripts/stack differ"
        );
    }
    let time = flag_value(&compose_args, "--storage.tsdb.retention.time");
    assert!(
        days(&time) >= 30,
        "retention {time} < the 30-day SLO window"
    );
    let size = flag_value(&compose_args, "--storage.tsdb.retention.size");
    assert!(
        size.ends_with("GB") || size.ends_with("MB"),
        "retention size {size:?} has no unit"
    );
}

/// A stalled Redis must read as `redis_up 0` (RedisDown cause="redis",
/// which inhibits the errors it causes) before Prometheus gives up on the
/// exporter's scrape (cause="exporter", which inhibits nothing): the
/// exporter's Redis timeout is under the redis job's scrape timeout, in
/// Compose and natively (scripts/test-stack checks the native one live).
#[test]
fn the_exporter_gives_up_on_redis_before_prometheus_gives_up_on_the_exporter() {
    let text = std::fs::read_to_string(repo().join("prometheus/prometheus.yml")).unwrap();
    let config: Value = serde_yaml::from_str(&text).unwrap();
    let redis_job = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "redis")
        .unwrap();
    let seconds = |text: &str| -> f64 {
        text.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a duration in seconds: {text:?}"))
    };
    let scrape_timeout = seconds(redis_job["scrape_timeout"].as_str().unwrap());
    let compose = compose();
    let exporter_timeout = compose["services"]["redis-exporter"]["environment"]
        ["REDIS_EXPORTER_CONNECTION_TIMEOUT"]
        .as_str()
        .expect("Compose: REDIS_EXPORTER_CONNECTION_TIMEOUT (the default is 15s)");
    assert!(seconds(exporter_timeout) < scrape_timeout);
    let stack = std::fs::read_to_string(repo().join("scripts/stack")).unwrap();
    let native = stack
        .split("-connection-timeout ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("scripts/stack: -connection-timeout for the exporter");
    assert!(seconds(native) < scrape_timeout, "native {native}");
}
