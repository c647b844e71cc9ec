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
//! `malloc_trim(0)` returns the free pages of every arena. The static musl build allocates with mimalloc,
//! which returns freed pages by itself on its next allocations; nothing is done there.
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

/// Every this many long-lived streams opened request a release (requests during a burst of openings make
/// one release, after the burst: [`request_release`]).
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

/// Whether a release was requested again while one was pending.
static AGAIN: AtomicBool = AtomicBool::new(false);

/// How many times a pending release waits again for requests that keep coming, before it runs anyway.
pub const RELEASE_MAX_WAITS: u32 = 10;

/// Schedules one release of free memory once requests have stopped for [`RELEASE_DELAY`] (at most
/// [`RELEASE_MAX_WAITS`] delays after the first; outside a tokio runtime, nothing happens). A burst of
/// requests is one release, after its end rather than after its start.
pub fn request_release() {
    if PENDING.swap(true, Ordering::AcqRel) {
        AGAIN.store(true, Ordering::Release);
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::Release);
        return;
    };
    runtime.spawn(async {
        for _ in 0..RELEASE_MAX_WAITS {
            tokio::time::sleep(RELEASE_DELAY).await;
            if !AGAIN.swap(false, Ordering::AcqRel) {
                break;
            }
        }
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
    async fn requests_coalesce_into_one_release_after_the_last_one() {
        request_release();
        assert!(PENDING.load(Ordering::Acquire));
        // Requests keep coming for three delays: the release waits for them.
        for _ in 0..3 {
            tokio::time::sleep(RELEASE_DELAY - Duration::from_millis(100)).await;
            request_release();
            assert!(PENDING.load(Ordering::Acquire));
        }
        tokio::time::sleep(RELEASE_DELAY + Duration::from_millis(10)).await;
        tokio::task::yield_now().await;
        assert!(
            PENDING.load(Ordering::Acquire),
            "still waiting: the last request came under a delay ago"
        );
        tokio::time::sleep(RELEASE_DELAY).await;
        tokio::task::yield_now().await;
        assert!(!PENDING.load(Ordering::Acquire));
        // Requests that never stop still get a release after the most delays.
        request_release();
        for _ in 0..RELEASE_MAX_WAITS + 2 {
            tokio::time::sleep(RELEASE_DELAY - Duration::from_millis(100)).await;
            if !PENDING.load(Ordering::Acquire) {
                return;
            }
            request_release();
        }
        panic!("a steady stream of requests held the release off");
    }
}
