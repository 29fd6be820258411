//! The opaque list cursor. Redis `SCAN` returns batches of roughly `COUNT`
//! keys, sometimes more; to honour `limit` exactly without losing or
//! repeating keys, the keys that did not fit on a page travel inside the
//! cursor and are served first on the next page. Keys never contain `~`, so
//! it separates the parts: `<scan>` or `<scan>~key~key…`, where `<scan>` is
//! the Redis cursor or `end` once the scan has finished.

use std::fmt;

use crate::key::validate_key;

/// Longest cursor accepted from a client, in bytes.
pub const MAX_CURSOR_LEN: usize = 64 * 1024;

/// Most keys a cursor may carry. A page leaves over at most about one
/// `SCAN` batch (128 keys asked, a few more when Redis returns more than
/// `COUNT`), so this is far above anything the service emits, yet it
/// bounds the `STRLEN`s one forged cursor costs to half of a real
/// 1000-item page.
pub const MAX_CURSOR_KEYS: usize = 512;

/// Position in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCursor {
    /// Redis `SCAN` cursor to continue from; `None` when the scan is done.
    pub scan: Option<u64>,
    /// Keys already scanned but not yet returned.
    pub pending: Vec<String>,
}

/// A cursor that this service did not produce.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(String);

impl ListCursor {
    /// Whether the listing has nothing more to return.
    pub fn is_exhausted(&self) -> bool {
        self.scan.is_none() && self.pending.is_empty()
    }

    /// Parses a cursor previously returned as `next_cursor`.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError(format!("longer than {MAX_CURSOR_LEN} bytes")));
        }
        let mut parts = text.split('~');
        let scan = match parts.next().unwrap_or_default() {
            "end" => None,
            number => Some(
                number
                    .parse::<u64>()
                    .map_err(|_| CursorError(format!("{number:?} is not a scan position")))?,
            ),
        };
        let pending = parts
            .enumerate()
            .map(|(index, key)| {
                if index >= MAX_CURSOR_KEYS {
                    return Err(CursorError(format!(
                        "carries more than {MAX_CURSOR_KEYS} keys"
                    )));
                }
                validate_key(key)
                    .map(|()| key.to_owned())
                    .map_err(CursorError)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { scan, pending })
    }
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scan {
            Some(scan) => write!(f, "{scan}")?,
            None => f.write_str("end")?,
        }
        for key in &self.pending {
            write!(f, "~{key}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for cursor in [
            ListCursor {
                scan: Some(17),
                pending: vec![],
            },
            ListCursor {
                scan: None,
                pending: vec!["a".into(), "b:c".into()],
            },
            ListCursor {
                scan: Some(0),
                pending: vec!["x".into()],
            },
        ] {
            assert_eq!(ListCursor::parse(&cursor.to_string()).unwrap(), cursor);
        }
    }

    #[test]
    fn rejects_foreign_cursors() {
        for bad in ["", "abc", "-1", "12~", "12~a b", "end~a/b"] {
            assert!(ListCursor::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bounds_the_keys_a_cursor_carries() {
        let carrying = |keys: usize| format!("end{}", "~x".repeat(keys));
        let most = ListCursor::parse(&carrying(MAX_CURSOR_KEYS)).unwrap();
        assert_eq!(most.pending.len(), MAX_CURSOR_KEYS);
        let err = ListCursor::parse(&carrying(MAX_CURSOR_KEYS + 1)).unwrap_err();
        assert!(err.to_string().contains("512 keys"), "{err}");
    }
}
