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
    /// Honour the `X-Fault-Status` and `X-Fault-Delay-Ms` request headers
    /// (`--fault-injection`, or a value: 1/0, true/false, yes/no, on/off).
    #[arg(
        long,
        env = "FAULT_INJECTION",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
    )]
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
        // An empty prefix would let the service list and delete every key
        // of the database.
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || !self.key_prefix.bytes().all(is_valid_key_char)
        {
            problems.push(format!(
                "--key-prefix: {:?} must be 1 to 64 bytes of [A-Za-z0-9._:-]",
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

/// Query parameters that carry credentials in `redis+unix://` and
/// `unix://` URLs (redis-rs reads `pass` and `user`).
const SECRET_PARAMS: &[&str] = &["pass", "password"];

/// The URL with every password replaced by `***`: the userinfo password of
/// `redis[s]://` and `valkey[s]://` URLs (or the whole userinfo when it has no
/// user/password separator), and the `pass=` query parameter of socket URLs.
/// Works on malformed URLs too, since those are echoed in error messages.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => rest.to_owned(),
    };
    let rest = redact_query(&rest);
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Replaces the values of [`SECRET_PARAMS`] in the query string of `text`.
fn redact_query(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{head}?{}", query.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
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

    #[test]
    fn every_url_form_is_redacted() {
        for (url, want) in [
            ("rediss://u:s3cret@db:6380/1", "rediss://u:***@db:6380/1"),
            ("valkey://:s3cret@db", "valkey://:***@db"),
            ("valkeys://u:s3cret@db", "valkeys://u:***@db"),
            ("redis://s3cret@db", "redis://***@db"),
            // A password containing '@' and ':'.
            ("redis://u:p@ss:w@db:6379", "redis://u:***@db:6379"),
            (
                "redis+unix:///run/redis.sock?pass=s3cret",
                "redis+unix:///run/redis.sock?pass=***",
            ),
            (
                "unix:///run/redis.sock?db=1&user=u&pass=s3cret#x",
                "unix:///run/redis.sock?db=1&user=u&pass=***#x",
            ),
            (
                "valkey+unix:///run/v.sock?PASS=s3cret&db=2",
                "valkey+unix:///run/v.sock?PASS=***&db=2",
            ),
            // Malformed URLs are echoed in errors: still redacted.
            ("redis://u:s3cret@db:notaport", "redis://u:***@db:notaport"),
            ("u:s3cret@db", "u:***@db"),
            ("http://u:s3cret@db", "http://u:***@db"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("s3cret"), "{url}");
        }
    }

    #[test]
    fn config_errors_never_echo_a_password() {
        for url in [
            "redis://u:s3cret@db:notaport",
            "http://u:s3cret@db",
            "u:s3cret@db",
            "redis://u:s3%63ret@db:99999",
            "redis+unix://?pass=s3cret&db=x",
        ] {
            let err = args(&["--redis-url", url]).into_config().unwrap_err();
            let text = err.to_string();
            assert!(text.contains("--redis-url"), "{url}: {text}");
            assert!(!text.contains("s3cret"), "{url}: {text}");
        }
    }

    #[test]
    fn an_empty_key_prefix_is_rejected() {
        let err = args(&["--key-prefix", ""]).into_config().unwrap_err();
        assert!(err.to_string().contains("--key-prefix"), "{err}");
    }

    #[test]
    fn fault_injection_takes_boolean_words_and_digits() {
        for (value, want) in [
            ("1", true),
            ("0", false),
            ("true", true),
            ("false", false),
            ("yes", true),
            ("off", false),
        ] {
            let config = args(&[&format!("--fault-injection={value}")])
                .into_config()
                .unwrap();
            assert_eq!(config.fault_injection, want, "{value}");
        }
        assert!(
            args(&["--fault-injection"])
                .into_config()
                .unwrap()
                .fault_injection
        );
        assert!(Args::try_parse_from(["items-service", "--fault-injection=maybe"]).is_err());
    }
}
