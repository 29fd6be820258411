//! Item key rules (SPEC §4): 1–256 bytes of `[A-Za-z0-9._:-]`. Keeping the
//! alphabet small means keys never need escaping in Redis glob patterns,
//! URLs, or the list cursor.

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Whether `b` may appear in a key.
pub fn is_valid_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Checks a key, returning a human-readable reason when it is rejected.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "key is {} bytes; the maximum is {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !c.is_ascii() || !is_valid_key_char(*c as u8))
    {
        return Err(format!(
            "key contains {bad:?}; allowed are A-Z a-z 0-9 . _ : -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate_key("user:42.profile_v-1").is_ok());
        assert!(validate_key(&"k".repeat(256)).is_ok());
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "a/b",
            "a b",
            "ключ",
            "a*",
            "a?b",
            "a~b",
            &"k".repeat(257),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
