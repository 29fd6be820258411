//! Which keys each table of a scenario may have. Checked on the parsed
//! document (with spans) before deserializing, so that *every* unknown key
//! is reported at once with a "did you mean" — serde would stop at the
//! first one.

use toml::de::{DeTable, DeValue};

use super::diagnostic::{suggest, Diagnostic};

/// A table's allowed keys and the schemas of its sub-tables.
struct TableSchema {
    keys: &'static [&'static str],
    children: &'static [(&'static str, &'static TableSchema)],
}

const STAGE: TableSchema = TableSchema {
    keys: &["target", "duration"],
    children: &[],
};
const PHASE: TableSchema = TableSchema {
    keys: &[
        "name",
        "executor",
        "rate",
        "start_rate",
        "duration",
        "stages",
        "vus",
        "start_vus",
        "think_time",
        "max_in_flight",
    ],
    children: &[("stages", &STAGE)],
};
const CLIENT: TableSchema = TableSchema {
    keys: &[
        "error_ratio_max",
        "p50_max",
        "p99_max",
        "achieved_rate_min_ratio",
    ],
    children: &[],
};
const SERVER: TableSchema = TableSchema {
    keys: &[
        "error_ratio_max",
        "p99_max",
        "cache_hit_ratio_min",
        "cache_hit_ratio_matches_client",
    ],
    children: &[],
};
const PROMQL: TableSchema = TableSchema {
    keys: &["name", "query", "min", "max"],
    children: &[],
};
const ALERT: TableSchema = TableSchema {
    keys: &["name", "state", "within"],
    children: &[],
};
const EXPECT: TableSchema = TableSchema {
    keys: &["client", "server", "promql", "alerts"],
    children: &[
        ("client", &CLIENT),
        ("server", &SERVER),
        ("promql", &PROMQL),
        ("alerts", &ALERT),
    ],
};
const KEYSPACE: TableSchema = TableSchema {
    keys: &[
        "preload",
        "value_bytes",
        "distribution",
        "zipf_exponent",
        "hot_fraction",
        "hot_probability",
    ],
    children: &[],
};
pub const MIX_KEYS: &[&str] = &[
    "get_hit", "get_miss", "put", "delete", "list", "root", "fault",
];
const MIX: TableSchema = TableSchema {
    keys: MIX_KEYS,
    children: &[],
};
const FAULT: TableSchema = TableSchema {
    keys: &["status", "delay"],
    children: &[],
};
const ROOT: TableSchema = TableSchema {
    keys: &[
        "name",
        "description",
        "seed",
        "request_timeout",
        "keyspace",
        "mix",
        "fault",
        "phases",
        "expect",
    ],
    children: &[
        ("keyspace", &KEYSPACE),
        ("mix", &MIX),
        ("fault", &FAULT),
        ("phases", &PHASE),
        ("expect", &EXPECT),
    ],
};

/// Reports every key of `document` that the scenario format does not know.
pub fn unknown_keys(document: &DeTable<'_>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    check_table(document, &ROOT, "", &mut diagnostics);
    diagnostics
}

fn check_table(table: &DeTable<'_>, schema: &TableSchema, path: &str, out: &mut Vec<Diagnostic>) {
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        if !schema.keys.contains(&name) {
            let location = if path.is_empty() {
                "the top level".to_owned()
            } else {
                format!("[{path}]")
            };
            let mut diagnostic = Diagnostic::new(
                Some(key.span()),
                format!("unknown field `{name}` in {location}"),
            );
            diagnostic = match suggest(name, schema.keys) {
                Some(candidate) => diagnostic.with_hint(format!("did you mean `{candidate}`?")),
                None => {
                    diagnostic.with_hint(format!("expected one of: {}", schema.keys.join(", ")))
                }
            };
            out.push(diagnostic);
            continue;
        }
        let Some((_, child)) = schema.children.iter().find(|(child, _)| *child == name) else {
            continue;
        };
        let child_path = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        match value.get_ref() {
            DeValue::Table(inner) => check_table(inner, child, &child_path, out),
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        check_table(inner, child, &child_path, out);
                    }
                }
            }
            _ => {}
        }
    }
}
