//! Scenario validation: the shipped scenarios are valid, and every invalid
//! fixture fails with its message and position, exit 2, through the binary.

use crate::common::{binary, loadgen, repo};

#[tokio::test]
async fn shipped_scenarios_are_valid() {
    let dir = repo().join("scenarios");
    let mut paths: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "{paths:?}");
    let mut args = vec!["check"];
    args.extend(paths.iter().map(String::as_str));
    let (exit, out, err) = loadgen(&args).await;
    assert_eq!(exit, loadgen::Exit::Pass, "{err}");
    for name in [
        "smoke",
        "baseline",
        "hit-heavy",
        "miss-heavy",
        "error-storm",
    ] {
        assert!(out.contains(&format!("{name}.toml: ok")), "{out}");
    }
}

#[test]
fn every_invalid_fixture_gives_its_message_and_exit_2() {
    let dir = repo().join("loadgen/tests/fixtures/invalid");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let output = binary().arg("check").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            path.display()
        );
        for want in expected {
            let want = if want.starts_with(|c: char| c.is_ascii_digit()) {
                format!("{}:{want}", path.display())
            } else {
                want.to_owned()
            };
            assert!(
                stderr.contains(&want),
                "{}: missing {want:?} in:\n{stderr}",
                path.display()
            );
        }
        count += 1;
    }
    assert!(count >= 10, "only {count} fixtures");
}
