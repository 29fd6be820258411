//! `--start-at TIME`: RFC 3339 (`2026-05-01T12:00:00Z`,
//! `2026-05-01T14:00:00.5+02:00`) or `+30s` from now. Shards that start
//! at different moments (pods scheduled and images pulled at different
//! times) agree on one absolute instant, fixed once when the run is
//! submitted.

use std::time::{Duration, SystemTime};

/// Parses `text`, relative times counting from `now`.
pub fn parse(text: &str, now: SystemTime) -> Result<SystemTime, String> {
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
            let hours: i64 = offset[1..3].parse().map_err(|_| invalid())?;
            let minutes: i64 = offset[4..6].parse().map_err(|_| invalid())?;
            (local.to_owned() + "Z", sign * (hours * 3600 + minutes * 60))
        }
        _ => (text.replace('z', "Z"), 0),
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
        parse(text, SystemTime::UNIX_EPOCH).unwrap()
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
        for bad in [
            "tomorrow",
            "+30",
            "2026-05-01",
            "2026-05-01T12:00:00+2:00",
            "+-3s",
            "",
            "2026-05-01T12:00:00Zé€",
        ] {
            assert!(parse(bad, SystemTime::UNIX_EPOCH).is_err(), "{bad}");
        }
    }
}
