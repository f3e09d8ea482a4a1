//! Running many small AWS calls at once, at most a given number in flight
//! (claims, finishes, tally objects, owner lookups): tokio's `JoinSet`
//! without a concurrency limit of its own, and futures' `buffer_unordered`
//! would be one more dependency for eight lines.

/// Run `f` on every item, at most `limit` at once; the results in no
/// particular order. A task that panicked gives no result.
pub async fn map_bounded<T, F, Fut, R>(limit: usize, items: Vec<T>, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if set.len() >= limit.max(1) {
            if let Some(Ok(r)) = set.join_next().await {
                out.push(r);
            }
        }
        set.spawn(f(item));
    }
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out
}
