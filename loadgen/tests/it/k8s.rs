//! deploy/k8s/: no cluster runs here, so what can be checked is checked:
//! `deploy/k8s/run render` for 1, 4 and 64 shards yields manifests that
//! parse into the real Kubernetes API types (k8s-openapi) and carry what a
//! distributed run needs — the scenario verbatim, an Indexed Job with
//! completions = parallelism = N whose pods compute their shard from
//! JOB_COMPLETION_INDEX and share one start time, reports on a shared
//! volume, and a merge Job (rendered separately: it must not start before
//! the shards end) that exits with loadgen's code.

use std::process::Command;

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ConfigMap, Container, PersistentVolumeClaim, PodSpec},
};
use serde::Deserialize;

use crate::common::repo;

/// An hour from now: the script refuses past starts and starts more than
/// 24 h ahead.
fn start() -> String {
    humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string()
}

struct Rendered {
    config_map: ConfigMap,
    volume: PersistentVolumeClaim,
    shards: Job,
    merge: Job,
}

fn render(args: &[&str]) -> std::process::Output {
    render_part("render", args)
}

fn render_part(part: &str, args: &[&str]) -> std::process::Output {
    Command::new(repo().join("deploy/k8s/run"))
        .current_dir(repo())
        .arg(part)
        .args(args)
        .env_remove("SHARDS")
        .output()
        .expect("run deploy/k8s/run")
}

fn rendered(shards: u32, scenario: &str, start: &str) -> Rendered {
    let count = shards.to_string();
    let args = [
        "--shards",
        &count,
        "--scenario",
        scenario,
        "--start-at",
        start,
        "--name",
        "smoke-run",
        "--image",
        "registry.example/loadgen:1",
    ];
    let mut text = String::new();
    for part in ["render", "render-merge"] {
        let output = render_part(part, &args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stream = String::from_utf8(output.stdout).unwrap();
        let jobs = stream.matches("kind: Job").count();
        assert_eq!(jobs, 1, "{part}: one Job per stream, the merge apart");
        if !text.is_empty() {
            text += "\n---\n";
        }
        text += &stream;
    }
    let mut config_map = None;
    let mut volume = None;
    let mut jobs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).expect("valid YAML");
        match value["kind"].as_str() {
            Some("ConfigMap") => config_map = Some(serde_yaml::from_value(value).unwrap()),
            Some("PersistentVolumeClaim") => volume = Some(serde_yaml::from_value(value).unwrap()),
            Some("Job") => jobs.push(serde_yaml::from_value::<Job>(value).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let merge = jobs.pop().expect("merge job");
    let shards = jobs.pop().expect("shards job");
    assert!(jobs.is_empty());
    Rendered {
        config_map: config_map.expect("ConfigMap"),
        volume: volume.expect("PersistentVolumeClaim"),
        shards,
        merge,
    }
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn env<'a>(container: &'a Container, name: &str) -> &'a str {
    container
        .env
        .iter()
        .flatten()
        .find(|var| var.name == name)
        .and_then(|var| var.value.as_deref())
        .unwrap_or_else(|| panic!("env {name} missing"))
}

fn claim(spec: &PodSpec) -> &str {
    spec.volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
        .expect("reports volume")
}

#[test]
fn manifests_parse_into_kubernetes_types_for_1_4_and_64_shards() {
    let scenario = std::fs::read_to_string(repo().join("scenarios/smoke.toml")).unwrap();
    let start = start();
    let start = start.as_str();
    for shards in [1, 4, 64] {
        let run = rendered(shards, "scenarios/smoke.toml", start);
        assert_eq!(
            run.config_map.data.as_ref().unwrap()["scenario.toml"],
            scenario,
            "the scenario travels verbatim"
        );
        let volume = run.volume.spec.as_ref().unwrap();
        assert_eq!(
            volume.access_modes.as_deref(),
            Some(&["ReadWriteMany".to_owned()][..])
        );

        let spec = run.shards.spec.as_ref().unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!(spec.completions, Some(shards as i32));
        assert_eq!(spec.parallelism, Some(shards as i32));
        assert_eq!(
            spec.backoff_limit_per_index,
            Some(0),
            "a retried shard would start late"
        );
        assert_eq!(
            spec.backoff_limit, None,
            "a Job-wide limit would stop every other shard when one fails"
        );
        let pod_spec = pod(&run.shards);
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        let container = &pod_spec.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example/loadgen:1")
        );
        let script = container.args.as_ref().unwrap().join(" ");
        for needle in [
            "loadgen run /scenario/scenario.toml",
            "--shard \"$((JOB_COMPLETION_INDEX + 1))/$SHARDS\"",
            "--start-at \"$START_AT\"",
            "--out \"/reports/shard-$((JOB_COMPLETION_INDEX + 1)).json\"",
        ] {
            assert!(script.contains(needle), "{needle} not in {script}");
        }
        assert_eq!(env(container, "SHARDS"), shards.to_string());
        assert_eq!(env(container, "START_AT"), start);
        let mounts: Vec<&str> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/scenario", "/reports"]);
        assert_eq!(
            pod_spec.volumes.as_ref().unwrap()[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            run.config_map.metadata.name.clone().unwrap()
        );
        let volume_name = run.volume.metadata.name.as_deref().unwrap();
        assert_eq!(claim(pod_spec), volume_name);
        let security = pod_spec.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));

        let merge = run.merge.spec.as_ref().unwrap();
        assert_eq!(merge.completions, Some(1));
        assert_eq!(merge.backoff_limit, Some(0));
        let merge_pod = pod(&run.merge);
        assert_eq!(
            claim(merge_pod),
            volume_name,
            "the merge reads the shards' volume"
        );
        let script = merge_pod.containers[0].args.as_ref().unwrap().join(" ");
        assert!(
            script.starts_with("exec loadgen merge /reports/shard-*.json"),
            "{script}"
        );
    }
}

#[test]
fn render_refuses_bad_input_with_exit_2() {
    for (args, needle) in [
        (&["--shards", "0"][..], "--shards must be 1..=1000"),
        (&["--shards", "x"][..], "--shards must be"),
        (&["--scenario", "nope.toml"][..], "not found"),
        (&["--name", "Bad_Name"][..], "--name must be a DNS label"),
        (&["--shards"][..], "needs a value"),
        (&["--start-at", "+120s"][..], "absolute RFC 3339"),
        (&["--start-at", "tomorrow"][..], "absolute RFC 3339"),
        (
            &["--start-at", "2020-01-01T00:00:00Z"][..],
            "not in the future",
        ),
        (
            &["--start-at", "2099-01-01T00:00:00Z"][..],
            "more than 24 h ahead",
        ),
        (
            &["--start-at", "2030-01-01T00:00:00+99:99"][..],
            "absolute RFC 3339",
        ),
        (&["--target", "http://a\"b"][..], "not a plain http(s) URL"),
    ] {
        let output = render(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{args:?}"
        );
    }
}

#[test]
fn the_loadgen_image_is_multi_stage_non_root_and_pinned() {
    let text = std::fs::read_to_string(repo().join("compose/Dockerfile.loadgen")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let stages = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: {stages} FROM lines");
    // Base images come from ARG defaults, each pinned to a tag (never latest).
    for arg in lines
        .iter()
        .filter(|l| l.starts_with("ARG ") && l.contains("_IMAGE="))
    {
        let image = arg.split_once('=').unwrap().1;
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{image} is not pinned"
        );
    }
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !["root", "0", "0:0"].contains(&user.trim()),
        "runs as {user}"
    );
    assert!(text.contains("cargo build --release --locked -p loadgen"));
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/loadgen"]"#));
    // The Job's pods run as the image's user.
    let job = std::fs::read_to_string(repo().join("deploy/k8s/shards-job.yaml")).unwrap();
    let uid = user.split(':').next().unwrap();
    assert!(
        job.contains(&format!("runAsUser: {uid}")),
        "Job and image disagree on the user"
    );
}

#[test]
fn a_scenario_whose_first_line_is_indented_travels_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let text = "  # indented header\nname = \"x\"\n[mix]\nroot = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n";
    let path = dir.path().join("indented.toml");
    std::fs::write(&path, text).unwrap();
    let run = rendered(2, path.to_str().unwrap(), &start());
    assert_eq!(run.config_map.data.as_ref().unwrap()["scenario.toml"], text);
}
