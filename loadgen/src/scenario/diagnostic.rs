//! Scenario problems with their position: `file:line:column: message`, the
//! offending line with a caret, and a hint when we can guess the intent.

use std::{fmt, ops::Range};

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one file, rendered against its source.
#[derive(Debug)]
pub struct ScenarioErrors {
    pub path: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &diagnostic.span {
                Some(span) => {
                    let (line, col) = line_col(&self.source, span.start);
                    writeln!(
                        f,
                        "{}:{line}:{col}: error: {}",
                        self.path, diagnostic.message
                    )?;
                    let text = self.source.lines().nth(line - 1).unwrap_or_default();
                    let width = self.source[span.clone()]
                        .lines()
                        .next()
                        .map_or(1, |first| first.chars().count().max(1));
                    writeln!(f, "  {line:>4} | {text}")?;
                    writeln!(f, "       | {}{}", " ".repeat(col - 1), "^".repeat(width))?;
                }
                None => writeln!(f, "{}: error: {}", self.path, diagnostic.message)?,
            }
            if let Some(hint) = &diagnostic.hint {
                writeln!(f, "       = hint: {hint}")?;
            }
        }
        write!(
            f,
            "{}: {} problem{} found",
            self.path,
            self.diagnostics.len(),
            if self.diagnostics.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ScenarioErrors {}

/// The closest candidate, for "did you mean": first one that contains every
/// word of the input (`constant-rate` → `constant-arrival-rate`), else the
/// nearest within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let words = |text: &'a str| text.split(['-', '_']).filter(|w| !w.is_empty());
    let wanted: Vec<&str> = word.split(['-', '_']).filter(|w| !w.is_empty()).collect();
    if wanted.len() > 1 {
        let containing = candidates
            .iter()
            .filter(|candidate| wanted.iter().all(|w| words(candidate).any(|c| c == *w)))
            .min_by_key(|candidate| words(candidate).count());
        if let Some(found) = containing {
            return Some(found);
        }
    }
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| {
            let prefix = word.len().min(candidate.len()) >= 3
                && (candidate.starts_with(word) || word.starts_with(*candidate));
            prefix || *distance <= (candidate.len() / 2).max(2)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let source = "a = 1\nbb = 2\n";
        assert_eq!(line_col(source, 0), (1, 1));
        assert_eq!(line_col(source, 6), (2, 1));
        assert_eq!(line_col(source, 11), (2, 6));
    }

    #[test]
    fn suggestions() {
        let executors = [
            "constant-arrival-rate",
            "ramping-arrival-rate",
            "constant-vus",
            "ramping-vus",
        ];
        assert_eq!(
            suggest("constant-rate", &executors),
            Some("constant-arrival-rate")
        );
        assert_eq!(suggest("constant-vu", &executors), Some("constant-vus"));
        assert_eq!(suggest("banana", &executors), None);
        assert_eq!(
            suggest("get_hits", &["get_hit", "get_miss"]),
            Some("get_hit")
        );
    }
}
