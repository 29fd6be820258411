//! The Compose file and monitoring configs, checked without Docker: every
//! mounted path exists, every service has a healthcheck, images are pinned,
//! ports are bound to 127.0.0.1, and Grafana has no default password.

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
        for dependency in service["depends_on"].as_mapping().into_iter().flatten() {
            assert_eq!(
                dependency.1["condition"], "service_healthy",
                "{name} depends without a health condition"
            );
        }
    }
    let password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        .as_str()
        .unwrap();
    assert!(
        password.starts_with("${GRAFANA_ADMIN_PASSWORD"),
        "{password}"
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
