//! Two-stage configuration: clap `Args` mirror the flags and environment
//! variables of SPEC §4; `Config` is the validated form the service runs with.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};

use crate::key::is_valid_key_char;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Command-line flags; every flag can also come from its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "items-service",
    version,
    about = "Redis-backed HTTP item cache with Prometheus metrics"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Redis URL; a password in the URL is allowed and never logged.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Prefix of every Redis key the service owns.
    #[arg(long, env = "KEY_PREFIX", default_value = "items:")]
    pub key_prefix: String,
    /// Upper bound for every Redis command, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Concurrent requests above this are shed with 503 `overloaded`.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Honour the `X-Fault-Status` and `X-Fault-Delay-Ms` request headers.
    #[arg(long, env = "FAULT_INJECTION", default_value_t = false)]
    pub fault_injection: bool,
    /// Log format; the level comes from `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub redis_url: String,
    pub key_prefix: String,
    pub redis_timeout: Duration,
    pub max_in_flight: usize,
    pub fault_injection: bool,
    pub log_format: LogFormat,
}

/// All configuration problems found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Args {
    /// Validates every flag and reports all problems at once.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        if !(1..=60_000).contains(&self.redis_timeout_ms) {
            problems.push(format!(
                "--redis-timeout-ms: {} is outside 1..=60000",
                self.redis_timeout_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.max_in_flight) {
            problems.push(format!(
                "--max-in-flight: {} is outside 1..=1000000",
                self.max_in_flight
            ));
        }
        if self.key_prefix.len() > 64 || !self.key_prefix.bytes().all(is_valid_key_char) {
            problems.push(format!(
                "--key-prefix: {:?} must be at most 64 bytes of [A-Za-z0-9._:-]",
                self.key_prefix
            ));
        }
        if let Err(err) = redis::Client::open(self.redis_url.as_str()) {
            problems.push(format!(
                "--redis-url: {}: {err}",
                redact_url(&self.redis_url)
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            listen: self.listen,
            redis_url: self.redis_url,
            key_prefix: self.key_prefix,
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            max_in_flight: self.max_in_flight,
            fault_injection: self.fault_injection,
            log_format: self.log_format,
        })
    }
}

/// Replaces the password of a `redis://user:password@host` URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["items-service"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = args(&[]).into_config().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(config.key_prefix, "items:");
        assert_eq!(config.redis_timeout, Duration::from_millis(250));
        assert_eq!(config.max_in_flight, 1024);
        assert!(!config.fault_injection);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = args(&[
            "--redis-timeout-ms",
            "0",
            "--max-in-flight",
            "0",
            "--key-prefix",
            "bad prefix*",
        ])
        .into_config()
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cret@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(
            redact_url("redis://app:s3cret@db:6379"),
            "redis://app:***@db:6379"
        );
        assert_eq!(redact_url("redis://db:6379"), "redis://db:6379");
    }
}
