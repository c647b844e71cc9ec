//! Giving freed memory back to the operating system after a burst.
//!
//! What it owns: [`request_release`], called after work that allocates a lot and then frees it (loading a
//! large flag document, replacing a large source, a connection flood closing), which trims the allocator
//! once things have settled ([`RELEASE_DELAY`]), on the blocking pool, at most once per delay; and
//! [`stream_opened`], called for each long-lived stream (EventStream, OFREP change stream, sync stream),
//! which requests one after every [`STREAM_BURST`] of them.
//!
//! Why: glibc's allocator keeps freed memory in its arenas, so a daemon that once loaded a 25 MB document
//! (about 430 MB of flags while building them) kept that resident for good, and so did a flood of
//! connections (BENCHMARKS.md, "Memory after a burst"). Opening many streams at once leaves the same kind
//! of gaps: each request's short-lived buffers are freed between the long-lived states of the streams
//! opened around it, and those pages stay resident until trimmed (BENCHMARKS.md, "1,000 subscribers").
//! `malloc_trim(0)` returns the free pages of every arena. The static musl build allocates with mimalloc, which returns freed pages by itself on its next
//! allocations; nothing is done there.
//!
//! What it does not do: decide what counts as a burst of work (the callers do, with
//! [`LARGE_PAYLOAD_BYTES`] and [`LARGE_FLOOD_CONNECTIONS`]), or shrink anything still in use.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long after a burst the trim runs, so that a series of reloads or closing connections is trimmed
/// once.
pub const RELEASE_DELAY: Duration = Duration::from_secs(1);

/// A flag payload at least this large, or a reload that drops at least [`LARGE_FLAG_DROP`] flags,
/// requests a release. About 3,000 flags of the load generator's kind: loading 10,000 of them (0.9 MB)
/// left 4 MB freed but resident until this was lowered from 1 MiB.
pub const LARGE_PAYLOAD_BYTES: usize = 256 * 1024;

/// A reload that leaves the snapshot this many flags smaller requests a release.
pub const LARGE_FLAG_DROP: usize = 10_000;

/// A listener whose open connections fall to a quarter of a peak of at least this many requests a
/// release.
pub const LARGE_FLOOD_CONNECTIONS: usize = 1_000;

/// Every this many long-lived streams opened request a release (a burst of them opening within
/// [`RELEASE_DELAY`] is one release).
pub const STREAM_BURST: usize = 256;

/// Long-lived streams opened, counted toward [`STREAM_BURST`].
static STREAMS: StreamCount = StreamCount::new();

/// Counts one long-lived stream opened; every [`STREAM_BURST`]th requests a release.
pub fn stream_opened() {
    if STREAMS.opened() {
        request_release();
    }
}

/// A count of streams opened that says when a burst is complete.
struct StreamCount(AtomicUsize);

impl StreamCount {
    const fn new() -> Self {
        StreamCount(AtomicUsize::new(0))
    }

    /// Counts one; true for every [`STREAM_BURST`]th.
    fn opened(&self) -> bool {
        (self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1)).is_multiple_of(STREAM_BURST)
    }
}

/// Whether a release is already scheduled.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Schedules one release of free memory in [`RELEASE_DELAY`] (a no-op if one is pending, or outside a
/// tokio runtime).
pub fn request_release() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::Release);
        return;
    };
    runtime.spawn(async {
        tokio::time::sleep(RELEASE_DELAY).await;
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    });
}

/// Returns the allocator's free memory to the operating system now (glibc); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it walks glibc's own arenas under their locks and only
        // releases pages that hold no allocation. It is safe to call from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(
            released = released != 0,
            "returned free memory to the system"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_burst_of_streams_counts_once() {
        let count = StreamCount::new();
        let completed: Vec<usize> = (1..=3 * STREAM_BURST + 5)
            .filter(|_| count.opened())
            .collect();
        assert_eq!(
            completed,
            [STREAM_BURST, 2 * STREAM_BURST, 3 * STREAM_BURST]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_coalesce_into_one_release_after_the_delay() {
        request_release();
        assert!(PENDING.load(Ordering::Acquire));
        request_release();
        tokio::time::sleep(RELEASE_DELAY + Duration::from_millis(10)).await;
        tokio::task::yield_now().await;
        assert!(!PENDING.load(Ordering::Acquire));
    }
}
