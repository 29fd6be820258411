//! A typed client for the parts of the Prometheus and Alertmanager HTTP APIs
//! that loadgen verifies against. Errors say which server, which query and
//! what the server answered, so a failed check is easy to act on.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{de::DeserializeOwned, Deserialize};

/// Why a Prometheus or Alertmanager call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach {server} at {url}: {source}")]
    Unreachable {
        server: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{server} rejected the query `{query}`: {error_type}: {message}")]
    BadQuery {
        server: &'static str,
        query: String,
        error_type: String,
        message: String,
    },
    #[error("{server} answered HTTP {status} for {url}: {body}")]
    Http {
        server: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot decode {server}'s answer for {url}: {message}")]
    Decode {
        server: &'static str,
        url: String,
        message: String,
    },
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// One series of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<VectorItem>),
    Scalar((f64, String)),
    Matrix(Vec<MatrixItem>),
    String((f64, String)),
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

fn number(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default)]
    pub file: String,
    /// Evaluation interval in seconds.
    pub interval: f64,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    pub name: String,
    pub query: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub health: String,
    #[serde(rename = "lastError", default)]
    pub last_error: Option<String>,
    /// Alerting rules: the `for` duration in seconds.
    #[serde(default)]
    pub duration: f64,
    /// Alerting rules: `keep_firing_for` in seconds (0 when unset).
    #[serde(rename = "keepFiringFor", default)]
    pub keep_firing_for: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub state: String,
    #[serde(rename = "activeAt", default)]
    pub active_at: Option<String>,
    #[serde(default)]
    pub value: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScrapeTarget {
    pub labels: BTreeMap<String, String>,
    pub health: String,
    #[serde(rename = "lastError", default)]
    pub last_error: String,
    #[serde(rename = "scrapeUrl", default)]
    pub scrape_url: String,
    #[serde(rename = "scrapeInterval", default)]
    pub scrape_interval: String,
}

impl ScrapeTarget {
    pub fn job(&self) -> &str {
        self.labels.get("job").map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
struct RulesData {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets")]
    active: Vec<ScrapeTarget>,
}

#[derive(Deserialize)]
struct ConfigData {
    yaml: String,
}

/// An alert as Alertmanager holds it.
#[derive(Debug, Clone, Deserialize)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub status: AmStatus,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AmStatus {
    /// `active`, `suppressed` or `unprocessed`.
    pub state: String,
    #[serde(rename = "inhibitedBy", default)]
    pub inhibited_by: Vec<String>,
}

impl AmAlert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Prometheus HTTP API client.
#[derive(Debug, Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: String,
}

/// Shared HTTP plumbing of both servers.
async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    server: &'static str,
    url: &str,
    form: Option<&[(&str, String)]>,
) -> Result<T, ApiError> {
    let request = match form {
        Some(form) => http.post(url).form(form),
        None => http.get(url),
    };
    let unreachable = |source| ApiError::Unreachable {
        server,
        url: url.to_owned(),
        source,
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(unreachable)?;
    if !(200..300).contains(&status) && status != 400 && status != 422 {
        return Err(ApiError::Http {
            server,
            url: url.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    serde_json::from_slice(&body).map_err(|err| ApiError::Decode {
        server,
        url: url.to_owned(),
        message: err.to_string(),
    })
}

/// HTTP client for both APIs: bounded connect and request times, so a
/// dead server is an error in seconds, not a hang.
fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("http client")
}

impl Prometheus {
    pub fn new(base: &str) -> Self {
        Self {
            http: api_client(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn api<T: DeserializeOwned>(
        &self,
        path: &str,
        form: Option<&[(&str, String)]>,
        query: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let envelope: Envelope<T> = get_json(&self.http, "Prometheus", &url, form).await?;
        match (envelope.status.as_str(), envelope.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(ApiError::BadQuery {
                server: "Prometheus",
                query: query.to_owned(),
                error_type: envelope.error_type.unwrap_or_default(),
                message: envelope.error.unwrap_or_else(|| "no data in answer".into()),
            }),
        }
    }

    /// Instant query, at `time` (default: now). Scalars come back as one
    /// sample without labels.
    pub async fn query(
        &self,
        query: &str,
        time: Option<f64>,
    ) -> Result<Vec<InstantSample>, ApiError> {
        let mut form = vec![("query", query.to_owned())];
        if let Some(time) = time {
            form.push(("time", format!("{time:.3}")));
        }
        let data: QueryData = self.api("/api/v1/query", Some(&form), query).await?;
        Ok(match data {
            QueryData::Vector(items) => items
                .into_iter()
                .map(|item| InstantSample {
                    labels: item.metric,
                    value: number(&item.value.1),
                })
                .collect(),
            QueryData::Scalar((_, value)) | QueryData::String((_, value)) => {
                vec![InstantSample {
                    labels: BTreeMap::new(),
                    value: number(&value),
                }]
            }
            QueryData::Matrix(_) => {
                return Err(ApiError::BadQuery {
                    server: "Prometheus",
                    query: query.to_owned(),
                    error_type: "unexpected".into(),
                    message:
                        "a range vector is not a value; wrap it in a function such as increase()"
                            .into(),
                })
            }
        })
    }

    /// Range query from `start` to `end` (Unix seconds) every `step`.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, ApiError> {
        let form = [
            ("query", query.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{:.3}", step.as_secs_f64())),
        ];
        let data: QueryData = self.api("/api/v1/query_range", Some(&form), query).await?;
        match data {
            QueryData::Matrix(items) => Ok(items
                .into_iter()
                .map(|item| RangeSeries {
                    labels: item.metric,
                    points: item
                        .values
                        .into_iter()
                        .map(|(t, v)| (t, number(&v)))
                        .collect(),
                })
                .collect()),
            _ => Err(ApiError::Decode {
                server: "Prometheus",
                url: format!("{}/api/v1/query_range", self.base),
                message: "expected a matrix".into(),
            }),
        }
    }

    pub async fn rules(&self) -> Result<Vec<RuleGroup>, ApiError> {
        Ok(self
            .api::<RulesData>("/api/v1/rules", None, "rules")
            .await?
            .groups)
    }

    pub async fn alerts(&self) -> Result<Vec<Alert>, ApiError> {
        Ok(self
            .api::<AlertsData>("/api/v1/alerts", None, "alerts")
            .await?
            .alerts)
    }

    pub async fn targets(&self) -> Result<Vec<ScrapeTarget>, ApiError> {
        Ok(self
            .api::<TargetsData>("/api/v1/targets?state=active", None, "targets")
            .await?
            .active)
    }

    pub async fn config(&self) -> Result<String, ApiError> {
        Ok(self
            .api::<ConfigData>("/api/v1/status/config", None, "config")
            .await?
            .yaml)
    }

    /// Timestamp (Unix seconds) of the latest scrape of `job`, if any.
    pub async fn last_scrape(&self, job: &str) -> Result<Option<f64>, ApiError> {
        let samples = self
            .query(&format!("max(timestamp(up{{job=\"{job}\"}}))"), None)
            .await?;
        Ok(samples
            .first()
            .map(|sample| sample.value)
            .filter(|t| t.is_finite()))
    }
}

/// Alertmanager API v2 client.
#[derive(Debug, Clone)]
pub struct Alertmanager {
    http: reqwest::Client,
    base: String,
}

impl Alertmanager {
    pub fn new(base: &str) -> Self {
        Self {
            http: api_client(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Every alert Alertmanager holds, active, suppressed or unprocessed.
    pub async fn alerts(&self) -> Result<Vec<AmAlert>, ApiError> {
        let url = format!("{}/api/v2/alerts", self.base);
        get_json(&self.http, "Alertmanager", &url, None).await
    }
}

/// Parses a Prometheus duration such as `1m`, `30s`, `1h30m`, `250ms`.
pub fn parse_prom_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_recorded_vector_answer() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"items-service"},"value":[1732480000.123,"0.25"]},{"metric":{},"value":[1732480000.123,"NaN"]}]}}"#;
        let envelope: Envelope<QueryData> = serde_json::from_str(body).unwrap();
        let QueryData::Vector(items) = envelope.data.unwrap() else {
            panic!("not a vector")
        };
        assert_eq!(items[0].metric["job"], "items-service");
        assert_eq!(number(&items[0].value.1), 0.25);
        assert!(number(&items[1].value.1).is_nan());
    }

    #[test]
    fn decodes_recorded_rules_and_alerts() {
        let rules = r#"{"status":"success","data":{"groups":[{"name":"g","file":"f.yml","interval":5,"rules":[{"state":"firing","name":"HighErrorRate","query":"job:http_requests_5xx:rate1m > 0.1","duration":60,"keepFiringFor":30,"labels":{"severity":"warning"},"annotations":{},"alerts":[],"health":"ok","evaluationTime":0.001,"lastEvaluation":"2026-11-24T20:00:00Z","type":"alerting"},{"name":"job:x:rate1m","query":"sum(rate(x[1m]))","health":"err","lastError":"boom","evaluationTime":0,"lastEvaluation":"2026-11-24T20:00:00Z","type":"recording"}]}]}}"#;
        let envelope: Envelope<RulesData> = serde_json::from_str(rules).unwrap();
        let group = &envelope.data.unwrap().groups[0];
        assert_eq!(group.rules[0].duration, 60.0);
        assert_eq!(group.rules[0].keep_firing_for, 30.0);
        assert_eq!(group.rules[1].keep_firing_for, 0.0);
        assert_eq!(group.rules[1].last_error.as_deref(), Some("boom"));
        let am = r#"[{"labels":{"alertname":"CriticalErrorRate"},"status":{"state":"active","inhibitedBy":[],"silencedBy":[]},"startsAt":"2026-11-24T20:00:00Z"}]"#;
        let alerts: Vec<AmAlert> = serde_json::from_str(am).unwrap();
        assert_eq!(alerts[0].name(), "CriticalErrorRate");
        assert_eq!(alerts[0].status.state, "active");
    }

    #[test]
    fn decodes_a_recorded_error() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
        let envelope: Envelope<QueryData> = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.status, "error");
        assert_eq!(envelope.error_type.as_deref(), Some("bad_data"));
    }

    #[test]
    fn decodes_recorded_targets_and_config() {
        let targets = r#"{"status":"success","data":{"activeTargets":[{"labels":{"job":"items-service","instance":"127.0.0.1:9000"},"scrapeUrl":"http://127.0.0.1:9000/metrics","health":"up","lastError":"","scrapeInterval":"5s"}],"droppedTargets":[]}}"#;
        let envelope: Envelope<TargetsData> = serde_json::from_str(targets).unwrap();
        let target = &envelope.data.unwrap().active[0];
        assert_eq!(
            (target.job(), target.health.as_str()),
            ("items-service", "up")
        );
        assert_eq!(
            parse_prom_duration(&target.scrape_interval),
            Some(Duration::from_secs(5))
        );
        let config = r#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 15s\n"}}"#;
        let envelope: Envelope<ConfigData> = serde_json::from_str(config).unwrap();
        assert!(envelope.data.unwrap().yaml.contains("scrape_interval: 15s"));
    }

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prom_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_prom_duration("1h30m"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_prom_duration("250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_prom_duration("5x"), None);
    }
}
