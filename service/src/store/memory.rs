//! In-memory store for unit tests of the HTTP layer (no TTLs, no Redis).
//! The real behaviour is tested against a real `redis-server`.

use std::{collections::BTreeMap, sync::Mutex};

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::{Item, ListCursor, Page, Store, StoreError};

/// A sorted map; the list cursor's `pending` holds the last key returned.
#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<String, Box<RawValue>>>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, StoreError> {
        Ok(self.items.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &str, value: &RawValue, _ttl: Option<u64>) -> Result<(), StoreError> {
        self.items
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.items.lock().unwrap().remove(key).is_some())
    }

    async fn list(&self, cursor: Option<ListCursor>, limit: usize) -> Result<Page, StoreError> {
        let after = cursor.and_then(|c| c.pending.into_iter().next());
        let items = self.items.lock().unwrap();
        let page: Vec<Item> = items
            .iter()
            .filter(|(key, _)| after.as_deref().is_none_or(|after| key.as_str() > after))
            .take(limit)
            .map(|(key, value)| Item {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        let more = page.last().is_some_and(|last| {
            items
                .range::<str, _>((
                    std::ops::Bound::Excluded(last.key.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .is_some()
        });
        let next = more.then(|| ListCursor {
            scan: None,
            pending: vec![page.last().unwrap().key.clone()],
        });
        Ok(Page { items: page, next })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
