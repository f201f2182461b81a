//! Helpers shared by the root package's end-to-end tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Poll `check` every 20 ms until it gives a value or `within` has passed: tests wait for a
/// worker to do something (a sweep, an eviction) this way, never by sleeping and then asserting.
pub async fn poll<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
