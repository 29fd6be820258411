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
    /// (`--fault-injection`, or a value: 1/0, true/false, yes/no, on/off;
    /// empty is off).
    #[arg(
        long,
        env = "FAULT_INJECTION",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = parse_switch,
        action = clap::ArgAction::Set,
    )]
    pub fault_injection: bool,
    /// Log format; the level comes from `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A boolean switch: the words of clap's `BoolishValueParser`, and empty
/// for off, so that `FAULT_INJECTION=` (an unset compose variable) means
/// what it looks like.
fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "n" | "off" | "f" => Ok(false),
        "1" | "true" | "yes" | "y" | "on" | "t" => Ok(true),
        _ => Err(format!(
            "{value:?} is not a switch: use 1/0, true/false, yes/no, on/off (empty is off)"
        )),
    }
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

/// Query parameters that carry credentials: redis-rs reads `pass` from
/// `redis+unix://` and `unix://` URLs; `password` is redacted too, in case a
/// later version or a confused operator uses it. Compared after decoding the
/// name the way redis-rs does (`application/x-www-form-urlencoded`), so
/// `pa%73s` is a password too.
const SECRET_PARAMS: &[&str] = &["pass", "password"];

/// The URL with every password replaced by `***`, for logs and error
/// messages. Works on malformed URLs too (they are echoed in configuration
/// errors), and errs on the side of hiding:
/// - query parameters named [`SECRET_PARAMS`] (after decoding) lose their
///   value, and a fragment (meaningless to Redis, but perhaps the tail of a
///   password holding a raw `#`) is hidden whole;
/// - the userinfo keeps only its user name; it is looked for before the
///   first `?` or `#` only, so an `@` inside a query value never passes for
///   the end of a userinfo;
/// - an `@` still visible after that (a password holding a raw `?` or `#`)
///   hides everything before it.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    let split = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority_and_path, tail) = rest.split_at(split);
    if tail
        .split_once('#')
        .is_some_and(|(_, fragment)| fragment.contains('@'))
    {
        out.push_str("***");
        return out;
    }
    let tail = redact_tail(tail);
    if let Some((_, after)) = tail.rsplit_once('@') {
        out.push_str("***@");
        out.push_str(after);
        return out;
    }
    match authority_and_path.rsplit_once('@') {
        Some((userinfo, host)) => {
            push_redacted_userinfo(&mut out, userinfo);
            out.push_str(host);
        }
        None => out.push_str(authority_and_path),
    }
    out.push_str(&tail);
    out
}

fn push_redacted_userinfo(out: &mut String, userinfo: &str) {
    match userinfo.split_once(':') {
        Some((user, _password)) => {
            out.push_str(user);
            out.push_str(":***@");
        }
        None => out.push_str("***@"),
    }
}

/// Redacts a `?query#fragment` tail (or the part of a malformed URL after
/// its last `@`, which may also hold a query).
fn redact_tail(text: &str) -> String {
    let (head, fragment) = match text.split_once('#') {
        Some((head, fragment)) => (head, Some(fragment)),
        None => (text, None),
    };
    let mut out = match head.split_once('?') {
        Some((before, query)) => {
            let pairs: Vec<String> = query.split('&').map(redact_pair).collect();
            format!("{before}?{}", pairs.join("&"))
        }
        None => head.to_owned(),
    };
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str("***");
        }
    }
    out
}

/// One `name=value` pair, its value hidden when the decoded name is secret.
fn redact_pair(pair: &str) -> String {
    let (name, has_value) = match pair.split_once('=') {
        Some((name, _)) => (name, true),
        None => (pair, false),
    };
    let decoded: String = form_urlencoded::parse(name.as_bytes())
        .map(|(name, value)| format!("{name}{value}"))
        .collect();
    if has_value && SECRET_PARAMS.contains(&decoded.to_ascii_lowercase().as_str()) {
        format!("{name}=***")
    } else {
        pair.to_owned()
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
                "unix:///run/redis.sock?db=1&user=u&pass=***#***",
            ),
            // An '@' inside a query value is not the end of a userinfo.
            (
                "unix:///tmp/none.sock?db=0&pass=x@y:s3cret",
                "unix:///tmp/none.sock?db=0&pass=***",
            ),
            (
                "redis+unix:///tmp/none.sock?pass=top@s3cret",
                "redis+unix:///tmp/none.sock?pass=***",
            ),
            (
                "redis+unix:///s.sock?pass=top@s3cret&db=x",
                "redis+unix:///s.sock?pass=***&db=x",
            ),
            (
                "redis://u:s3cret@db:6379/0?pass=x@y:s3cret&protocol=resp3",
                "redis://u:***@db:6379/0?pass=***&protocol=resp3",
            ),
            (
                "rediss://u:s3cret@db?password=s3cret",
                "rediss://u:***@db?password=***",
            ),
            // Names are decoded as redis-rs decodes them.
            (
                "redis+unix:///s.sock?pa%73s=s3cret",
                "redis+unix:///s.sock?pa%73s=***",
            ),
            (
                "unix:///s.sock?%70ass=s3cret&db=x",
                "unix:///s.sock?%70ass=***&db=x",
            ),
            (
                "unix:///s.sock?%50ASSWORD=s3cret",
                "unix:///s.sock?%50ASSWORD=***",
            ),
            // Raw '?', '#' or '/' inside a userinfo password: unparseable,
            // still hidden.
            ("redis://u:s3?cret@db", "redis://***@db"),
            ("redis://u:s3#cret@db", "redis://***"),
            ("redis://u:s3/cret@db", "redis://u:***@db"),
            ("redis://db#frag", "redis://db#***"),
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
            "redis+unix:///tmp/none.sock?pass=top@s3cret&db=x",
            "redis+unix:///tmp/none.sock?%70ass=s3cret&db=x",
            "unix:///tmp/none.sock?pa%73s=s3cret&db=x",
            "unix:///tmp/none.sock?pass=x@y:s3cret&db=x",
            "rediss://u:s3?cret@db:1",
            "redis://u:s3#cret@db:x",
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
        assert!(Args::try_parse_from(["items-service", "--fault-injection=2"]).is_err());
        assert!(
            !args(&["--fault-injection="])
                .into_config()
                .unwrap()
                .fault_injection,
            "empty is off"
        );
    }
}
