//! After the last phase, loadgen keeps its metrics up until Prometheus has
//! scraped the final values: otherwise the last seconds of a run (and
//! `loadgen_phase_active` going to 0) would never reach Grafana, and the
//! counters Prometheus holds would be short of the client's exact counts.
//!
//! Before the first request it also waits for one scrape, so every
//! series (pre-created at 0) is known to Prometheus at 0 and `rate()` or
//! `increase()` see the first requests too.
//!
//! Only when Prometheus actually scrapes this process (an active target
//! of job `loadgen` on our port); otherwise nothing to wait for.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::verify::prometheus::{parse_prom_duration, ApiError, Prometheus};

/// Prometheus job name of loadgen's metrics (SPEC §10).
pub const JOB: &str = "loadgen";
const POLL: Duration = Duration::from_millis(250);
/// Never wait longer than this, whatever the scrape interval.
const MAX_WAIT: Duration = Duration::from_secs(70);

/// How the wait for the final scrape ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalScrape {
    /// Prometheus has no `loadgen` target on this port, or there is no
    /// Prometheus (connection refused: nothing to warn about).
    NotScraped,
    /// Prometheus did not answer properly (hung, an HTTP error): the error.
    Unreachable(String),
    /// A successful scrape started at this Unix time, after the end.
    Scraped { instance: String, at: f64 },
    /// Scraped during the run, but no successful scrape came in time.
    Missed { instance: String, waited: Duration },
    /// Interrupted (Ctrl-C) before or during the wait.
    Cancelled,
}

impl FinalScrape {
    /// A line for the run's output when something went wrong.
    pub fn warning(&self) -> Option<String> {
        match self {
            FinalScrape::Missed { instance, waited } => Some(format!(
                "warning: Prometheus did not scrape loadgen's metrics (job \"{JOB}\", instance {instance}) within {waited:.0?} after the run: its final values are missing there"
            )),
            FinalScrape::Unreachable(error) => Some(format!(
                "note: not waiting for Prometheus' final scrape ({error}): if it scrapes job \"{JOB}\", loadgen's final values may be missing there"
            )),
            FinalScrape::Cancelled => Some(
                "warning: interrupted before Prometheus' final scrape of loadgen's metrics: their final values may be missing there".to_owned(),
            ),
            FinalScrape::NotScraped | FinalScrape::Scraped { .. } => None,
        }
    }
}

/// The port of a scrape URL such as `http://127.0.0.1:9465/metrics`.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// Waits until Prometheus has scraped our `addr` successfully at a time
/// after `after` (Unix seconds: when the final values were set, or when
/// the series were created).
pub async fn wait_for_scrape(
    prometheus: &Prometheus,
    addr: SocketAddr,
    after: f64,
    cancel: &CancellationToken,
) -> FinalScrape {
    let targets = tokio::select! {
        targets = prometheus.targets() => targets,
        () = cancel.cancelled() => return FinalScrape::Cancelled,
    };
    let targets = match targets {
        Ok(targets) => targets,
        Err(ApiError::Unreachable { source, .. })
            if source.is_connect() && !source.is_timeout() =>
        {
            return FinalScrape::NotScraped
        }
        Err(err) => return FinalScrape::Unreachable(err.to_string()),
    };
    let Some(target) = targets
        .iter()
        .find(|t| t.job() == JOB && url_port(&t.scrape_url) == Some(addr.port()))
    else {
        return FinalScrape::NotScraped;
    };
    let instance = target.labels.get("instance").cloned().unwrap_or_default();
    let interval = parse_prom_duration(&target.scrape_interval).unwrap_or(Duration::from_secs(15));
    let deadline = (interval * 2 + Duration::from_secs(10)).min(MAX_WAIT);
    let selector = format!("up{{job=\"{JOB}\",instance=\"{instance}\"}}");
    // The time of the latest scrape, only if it succeeded.
    let query = format!("timestamp({selector}) and {selector} == 1");
    let started = Instant::now();
    loop {
        let samples = tokio::select! {
            samples = prometheus.query(&query, None) => samples,
            () = cancel.cancelled() => return FinalScrape::Cancelled,
        };
        if let Ok(samples) = samples {
            if let Some(at) = samples.iter().map(|s| s.value).find(|at| *at > after) {
                return FinalScrape::Scraped { instance, at };
            }
        }
        if started.elapsed() >= deadline {
            return FinalScrape::Missed {
                instance,
                waited: started.elapsed(),
            };
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => return FinalScrape::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_of_scrape_urls() {
        assert_eq!(url_port("http://127.0.0.1:9465/metrics"), Some(9465));
        assert_eq!(
            url_port("http://host.docker.internal:29465/metrics"),
            Some(29465)
        );
        assert_eq!(url_port("http://[::1]:9465/metrics"), Some(9465));
        assert_eq!(url_port("http://localhost/metrics"), None);
    }
}
