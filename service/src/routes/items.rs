//! The item API: create/replace, fetch (counting cache hits and misses),
//! delete, and cursor-paginated listing.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    error::AppError,
    extract::{ItemKey, JsonBody},
    key::validate_key,
    store::ListCursor,
    AppState,
};

/// Longest TTL accepted: 30 days.
pub const MAX_TTL_SECONDS: u64 = 2_592_000;
/// Page size bounds of `GET /items`.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateItem {
    key: String,
    value: Box<RawValue>,
    ttl_seconds: Option<u64>,
}

#[derive(Serialize)]
struct ItemBody<'a> {
    key: &'a str,
    value: &'a RawValue,
}

#[derive(Serialize)]
struct ListBody<'a> {
    items: Vec<ItemBody<'a>>,
    next_cursor: Option<String>,
}

/// Query string of `GET /items`; values are parsed by hand for clear errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `POST /items`: upsert, 201 with the stored item.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateItem>,
) -> Result<impl IntoResponse, AppError> {
    validate_key(&body.key).map_err(AppError::InvalidKey)?;
    if let Some(ttl) = body.ttl_seconds {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(AppError::InvalidBody(format!(
                "ttl_seconds must be 1..={MAX_TTL_SECONDS}, got {ttl}"
            )));
        }
    }
    state
        .store
        .put(&body.key, &body.value, body.ttl_seconds)
        .await?;
    let item = ItemBody {
        key: &body.key,
        value: &body.value,
    };
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `GET /items/{key}`: 200 with the item or 404; one cache hit or miss.
pub async fn fetch(
    State(state): State<AppState>,
    ItemKey(key): ItemKey,
) -> Result<impl IntoResponse, AppError> {
    match state.store.get(&key).await? {
        Some(value) => {
            state.metrics.cache_hits.inc();
            // scripts/mutants only: a service that counts a hit twice.
            #[cfg(feature = "mutant-double-cache-hit")]
            state.metrics.cache_hits.inc();
            Ok(Json(ItemBody {
                key: &key,
                value: &value,
            })
            .into_response())
        }
        None => {
            state.metrics.cache_misses.inc();
            Err(AppError::NotFound(format!("no item with key {key:?}")))
        }
    }
}

/// `DELETE /items/{key}`: 204, or 404 when absent.
pub async fn remove(
    State(state): State<AppState>,
    ItemKey(key): ItemKey,
) -> Result<StatusCode, AppError> {
    if state.store.delete(&key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(format!("no item with key {key:?}")))
    }
}

fn parse_list_query(query: ListQuery) -> Result<(Option<ListCursor>, usize), AppError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                AppError::InvalidQuery(format!(
                    "limit must be an integer 1..={MAX_LIMIT}, got {text:?}"
                ))
            })?,
    };
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => {
            Some(ListCursor::parse(text).map_err(|err| AppError::InvalidQuery(err.to_string()))?)
        }
    };
    Ok((cursor, limit))
}

/// `GET /items?cursor=&limit=`: one page; `next_cursor` is null at the end.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Query(query) = query.map_err(|rejection| AppError::InvalidQuery(rejection.body_text()))?;
    let (cursor, limit) = parse_list_query(query)?;
    let page = state.store.list(cursor, limit).await?;
    let body = ListBody {
        items: page
            .items
            .iter()
            .map(|item| ItemBody {
                key: &item.key,
                value: &item.value,
            })
            .collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    };
    Ok(Json(body).into_response())
}
