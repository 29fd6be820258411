//! `--start-at TIME`: RFC 3339 (`2026-05-01T12:00:00Z`,
//! `2026-05-01T14:00:00.5+02:00`) or `+30s` from now. Shards that start
//! at different moments (pods scheduled and images pulled at different
//! times) agree on one absolute instant, fixed once when the run is
//! submitted.

use std::time::{Duration, SystemTime};

/// Furthest a start may lie ahead: a typo (a year, a day) must not leave
/// shards sleeping silently for ever.
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Parses `text`, relative times counting from `now`; at most
/// [`MAX_AHEAD`] from `now`.
pub fn parse(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let at = instant(text, now)?;
    match at.duration_since(now) {
        Ok(ahead) if ahead > MAX_AHEAD => Err(format!(
            "--start-at {:?} is {:.1} h from now; at most {} h ahead is allowed",
            text.trim(),
            ahead.as_secs_f64() / 3600.0,
            MAX_AHEAD.as_secs() / 3600
        )),
        _ => Ok(at),
    }
}

fn instant(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Some(relative) = text.strip_prefix('+') {
        return crate::duration::parse(relative)
            .map(|offset| now + offset)
            .map_err(|err| format!("--start-at {text:?}: {err}"));
    }
    let invalid = || {
        format!(
            "--start-at {text:?} is neither RFC 3339 (e.g. 2026-05-01T12:00:00Z) nor +DURATION (e.g. +30s)"
        )
    };
    // humantime reads UTC ("Z"); a numeric offset is applied here.
    let split = text
        .len()
        .checked_sub(6)
        .filter(|at| text.is_char_boundary(*at))
        .map(|at| text.split_at(at));
    let (local, offset) = match split {
        Some((local, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':' =>
        {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            // Two digits each, within ±23:59 (RFC 3339's time-numoffset).
            let number = |digits: &str, max: i64| {
                digits
                    .bytes()
                    .all(|byte| byte.is_ascii_digit())
                    .then(|| digits.parse::<i64>().ok())
                    .flatten()
                    .filter(|n| *n <= max)
                    .ok_or_else(invalid)
            };
            let (hours, minutes) = (number(&offset[1..3], 23)?, number(&offset[4..6], 59)?);
            (
                local.to_ascii_uppercase() + "Z",
                sign * (hours * 3600 + minutes * 60),
            )
        }
        // RFC 3339 allows a lowercase `t` and `z`.
        _ => (text.to_ascii_uppercase(), 0),
    };
    let utc = humantime::parse_rfc3339(&local).map_err(|_| invalid())?;
    let shift = Duration::from_secs(offset.unsigned_abs());
    Ok(if offset >= 0 {
        utc - shift
    } else {
        utc + shift
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        instant(text, SystemTime::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn at_most_a_day_ahead() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_636_800);
        assert!(parse("+24h", now).is_ok());
        assert!(parse("2026-05-02T12:00:00Z", now).is_ok());
        for far in [
            "+25h",
            "+168h",
            "2026-05-02T12:00:01Z",
            "9999-12-31T23:59:59Z",
        ] {
            let err = parse(far, now).unwrap_err();
            assert!(err.contains("at most 24 h ahead"), "{far}: {err}");
        }
    }

    #[test]
    fn reads_relative_utc_and_offsets() {
        let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_636_800);
        assert_eq!(at("+30s"), SystemTime::UNIX_EPOCH + Duration::from_secs(30));
        assert_eq!(at("2026-05-01T12:00:00Z"), noon);
        assert_eq!(at("2026-05-01T14:00:00+02:00"), noon);
        assert_eq!(at("2026-05-01T07:30:00-04:30"), noon);
        assert_eq!(
            at("2026-05-01T12:00:00.25Z"),
            noon + Duration::from_millis(250)
        );
        assert_eq!(at("2026-05-01t12:00:00z"), noon);
        assert_eq!(at("2026-05-01t14:00:00+02:00"), noon);
        assert_eq!(at("2026-05-02T11:59:00+23:59"), noon);
        for bad in [
            "tomorrow",
            "+30",
            "2026-05-01",
            "2026-05-01T12:00:00+2:00",
            "+-3s",
            "",
            "2026-05-01T12:00:00Zé€",
            "2026-05-01T12:00:00+99:99",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00:00+02:60",
            "2026-05-01T12:00:00++1:00",
            "2026-05-01T12:00:00-+1:00",
        ] {
            assert!(instant(bad, SystemTime::UNIX_EPOCH).is_err(), "{bad}");
        }
    }
}
