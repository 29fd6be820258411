//! The HTML report looked at as a person would: headless Chromium (Debian
//! package `chromium`) opens the file from `file://` with the network
//! disabled, and the test fails on a blank page, a JavaScript error (the
//! page writes every error and console.error into `data-errors`) or a
//! chart that was not drawn. The screenshot is kept (see README: it is
//! docs/report.png when `LOADGEN_REPORT_PNG` points there).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use loadgen::Exit;
use serde_json::Value;

use crate::common::{loadgen, repo, run_with_report, Service};

/// Three phases (ramp, a constant rate that drops against slow faults,
/// closed-loop VUs) and a latency check that the slow faults fail: every
/// part of the page.
const SHOWCASE: &str = r#"
name = "showcase"
description = "Ramp up, hold with slow 503 faults and drops, then closed-loop VUs"
seed = 11
[keyspace]
preload = 100
[mix]
get_hit = 55
get_miss = 10
put = 15
fault = 20
[fault]
status = 503
delay = "300ms"
[[phases]]
name = "ramp"
executor = "ramping-arrival-rate"
start_rate = 20
stages = [{ target = 150, duration = "3s" }]
[[phases]]
name = "hold"
executor = "constant-arrival-rate"
rate = 150
duration = "3s"
max_in_flight = 8
[[phases]]
name = "vus"
executor = "constant-vus"
vus = 4
duration = "3s"
[expect.client]
error_ratio_max = 0.05
p99_max = "250ms"
"#;

const CHROMIUM: &str = "/usr/bin/chromium";

/// What Chromium made of the page.
pub struct Rendered {
    dom: String,
    screenshot: Vec<u8>,
}

async fn chromium(args: &[String], what: &str) -> Vec<u8> {
    let mut command = tokio::process::Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2050",
            // Let the page's scripts run to completion before the dump.
            "--virtual-time-budget=10000",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap_or_else(|err| {
        panic!("cannot start {CHROMIUM} ({err}); install it with `apt-get install -y chromium` (scripts/lib.sh ensure_stack_packages does)")
    });
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium {what} did not finish within 90 s"))
        .expect("chromium output");
    assert!(
        output.status.success(),
        "chromium {what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub async fn open_in_chromium(page: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let dom = chromium(
        &[profile_arg.clone(), "--dump-dom".into(), url.clone()],
        "--dump-dom",
    )
    .await;
    let png = profile.path().join("screenshot.png");
    chromium(
        &[profile_arg, format!("--screenshot={}", png.display()), url],
        "--screenshot",
    )
    .await;
    Rendered {
        dom: String::from_utf8(dom).expect("UTF-8 DOM"),
        screenshot: std::fs::read(&png).expect("chromium wrote the screenshot"),
    }
}

/// The `<html …>` start tag of the dumped DOM (where the page sets its
/// markers).
fn root_tag(dom: &str) -> &str {
    let start = dom.find("<html").expect("an <html> element");
    &dom[start..start + dom[start..].find('>').unwrap()]
}

/// Distinct colours and the share of non-white pixels: a blank or
/// error-only page has almost none.
fn ink(png_bytes: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = &buffer[..info.buffer_size()];
    let mut colours = std::collections::BTreeSet::new();
    let mut inked = 0usize;
    let mut total = 0usize;
    for pixel in pixels.chunks(channels) {
        let rgb = (pixel[0], pixel[1], pixel[2.min(channels - 1)]);
        colours.insert(rgb);
        total += 1;
        if rgb != (255, 255, 255) && rgb != (0xf6, 0xf8, 0xfa) {
            inked += 1;
        }
    }
    (colours.len(), inked as f64 / total as f64)
}

/// Asserts the page rendered completely: ready, no error, `charts` drawn.
pub fn assert_rendered(rendered: &Rendered, charts: usize, texts: &[&str]) {
    let root = root_tag(&rendered.dom);
    assert!(!root.contains("data-errors"), "JavaScript errors: {root}");
    assert!(root.contains("data-ready=\"true\""), "not ready: {root}");
    assert!(
        root.contains(&format!("data-charts=\"{charts}\"")),
        "expected {charts} charts: {root}"
    );
    assert_eq!(
        rendered.dom.matches("data-chart=\"drawn\"").count(),
        charts,
        "charts drawn"
    );
    assert!(
        rendered.dom.matches("<canvas").count() >= charts,
        "a canvas per chart"
    );
    for text in texts {
        assert!(rendered.dom.contains(text), "page lacks {text:?}");
    }
    let (colours, inked) = ink(&rendered.screenshot);
    assert!(
        colours > 50 && inked > 0.05,
        "the screenshot looks blank: {colours} colours, {:.1} % inked",
        inked * 100.0
    );
}

fn keep_screenshot(rendered: &Rendered, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, &rendered.screenshot).unwrap();
    if let Ok(docs) = std::env::var("LOADGEN_REPORT_PNG") {
        std::fs::write(repo().join(docs), &rendered.screenshot).unwrap();
    }
    path
}

/// `loadgen report JSON --html HTML`, which must succeed.
async fn loadgen_report(json: &Path, html: &Path) {
    let (exit, out, err) = loadgen(&[
        "report",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(exit, Exit::Pass, "{out}{err}");
    assert_eq!(out, format!("wrote {}\n", html.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_headless_chromium() {
    let service = Service::start().await;
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("run.html");
    let (exit, out, report) = run_with_report(
        &dir,
        &service,
        SHOWCASE,
        &["--html", html.to_str().unwrap()],
    )
    .await;
    assert_eq!(exit, Exit::CheckFailed, "p99_max fails: {out}");
    assert!(report["summary"]["dropped"].as_u64().unwrap() > 0, "{out}");
    let json = dir.path().join("report.json");

    // `loadgen report` renders the same page from the JSON.
    let again = dir.path().join("again.html");
    loadgen_report(&json, &again).await;
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page == std::fs::read_to_string(&again).unwrap(),
        "`loadgen report` renders another page than `run --html`"
    );
    // Self-contained: nothing that loads a resource, and a policy that
    // forbids any network access from the page.
    let data_start = page.find("id=\"report-data\"").unwrap();
    let data_end = data_start + page[data_start..].find("</script>").unwrap();
    for loader in [
        "src=",
        "<link",
        "@import",
        "url(",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !page[..data_start].contains(loader) && !page[data_end..].contains(loader),
            "{loader} in the page"
        );
    }
    assert!(page.contains("content=\"default-src 'none'"));

    let rendered = open_in_chromium(&html).await;
    assert_rendered(
        &rendered,
        4,
        &[
            "FAIL",
            "client p99_max",
            "class=\"failed\"",
            "showcase",
            "ramp",
            "hold",
            "vus",
            "get_hit",
        ],
    );
    let kept = keep_screenshot(&rendered, "report.png");
    eprintln!("screenshot: {}", kept.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_report_renders_with_what_it_has() {
    let fixture = repo().join("loadgen/tests/fixtures/reports/v1.json");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("v1.html");
    loadgen_report(&fixture, &html).await;
    let rendered = open_in_chromium(&html).await;
    // Rate, latency and errors are in schema 1; drops per second are not.
    assert_rendered(
        &rendered,
        3,
        &[
            "old-report",
            "not recorded in this report (schema version 1)",
        ],
    );
    assert!(rendered.dom.contains("data-chart=\"absent\""));
}

#[tokio::test]
async fn report_refuses_what_it_cannot_render() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("out.html");
    let cases = [
        ("not-json", "{ nope", "is not a loadgen JSON report"),
        ("other", r#"{"hello": 1}"#, "missing field `schema_version`"),
        // serde alone would read the five fields from an array.
        (
            "array",
            r#"[2, "x", true, [], [0, [], [], []]]"#,
            "the report must be a JSON object",
        ),
        (
            "newer",
            &newer_report(),
            "has schema_version 99; this loadgen reads 1 to 2",
        ),
    ];
    for (name, text, message) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        let (exit, _, err) = loadgen(&[
            "report",
            path.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ])
        .await;
        assert_eq!(exit, Exit::Error, "{name}: {err}");
        assert!(err.contains(message), "{name}: {err}");
        assert!(!html.exists(), "{name}: nothing written");
    }
    let (exit, _, err) = loadgen(&["report", "/nonexistent.json", "--html", "x.html"]).await;
    assert_eq!(exit, Exit::Error);
    assert!(
        err.contains("reading the report /nonexistent.json"),
        "{err}"
    );
}

fn newer_report() -> String {
    let mut report: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("loadgen/tests/fixtures/reports/v1.json")).unwrap(),
    )
    .unwrap();
    report["schema_version"] = Value::from(99);
    report.to_string()
}
