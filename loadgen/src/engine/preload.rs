//! Writes the keys a scenario reads before measuring starts: concurrently,
//! not measured, with its own progress bar. Any failure stops the run —
//! measuring against a half-loaded keyspace would make every check lie.
//! A shard (`--shard I/N`) preloads only its own stripe of both families;
//! the shards' preloads together are exactly the single-process preload.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::{
    engine::client::{send_with, Target},
    engine::progress::Progress,
    engine::request::{PlannedRequest, RequestGen},
    scenario::plan::OpKind,
};

const WORKERS: u64 = 32;

/// This shard's preload, in order: its `stable` keys, then its delete pool.
pub fn keys(requests: &RequestGen, stable: u64, delete_pool: u64) -> Vec<String> {
    let shard = requests.shard();
    let own_stable = shard.share(stable);
    (0..own_stable + shard.share(delete_pool))
        .map(|index| key(requests, own_stable, index))
        .collect()
}

fn key(requests: &RequestGen, own_stable: u64, index: u64) -> String {
    let shard = requests.shard();
    if index < own_stable {
        requests.keys().stable_key(shard.global(index))
    } else {
        requests.keys().delete_key(shard.global(index - own_stable))
    }
}

/// Stores this shard's share of `stable` keys of the stable family and of
/// the `delete_pool` deletable keys.
pub async fn preload(
    target: Arc<Target>,
    requests: &RequestGen,
    stable: u64,
    delete_pool: u64,
    timeout: std::time::Duration,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let shard = requests.shard();
    let stable = shard.share(stable);
    let total = stable + shard.share(delete_pool);
    if total == 0 {
        return Ok(());
    }
    progress.start("preload", total, false);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    // The shards together preload with WORKERS connections, not N × WORKERS.
    for _ in 0..shard.concurrency(WORKERS).min(total) {
        let (next, target, requests) = (Arc::clone(&next), Arc::clone(&target), requests.clone());
        workers.spawn(async move {
            let mut connection = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(());
                }
                let key = key(&requests, stable, index);
                let request = PlannedRequest {
                    op: OpKind::Put,
                    method: "POST",
                    path: "/items".into(),
                    body: Some(requests.put_body(&key)),
                    fault: None,
                    expected_status: 201,
                };
                match send_with(&mut connection, &target, &request, timeout).await {
                    Ok(201) => {}
                    Ok(status) => {
                        anyhow::bail!("preloading {key} got HTTP {status} instead of 201")
                    }
                    Err(err) => anyhow::bail!("preloading {key} failed: {}", err.name()),
                }
            }
        });
    }
    let mut result = Ok(());
    while let Some(joined) = workers.join_next().await {
        progress.set_position(next.load(Ordering::Relaxed).min(total));
        if let Err(err) = joined.map_err(anyhow::Error::from).and_then(|r| r) {
            workers.abort_all();
            result = Err(err);
            break;
        }
    }
    progress.set_position(total);
    progress.finish();
    result
}
