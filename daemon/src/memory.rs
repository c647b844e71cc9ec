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
//! At start, [`drop_relocation_tables`] drops the resident copy of the tables the loader read before
//! `main` (docs/building.md).
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

/// Drops this process's resident copy of its own relocation tables, which the dynamic loader (or, in
/// the static build, the program's own start-up code) read once to fix up the program's pointers before
/// `main` and which nothing reads again. A position-independent binary carries one relocation per
/// pointer in its data: about 0.57 MB for `flagpole`, half a megabyte of an idle daemon's RSS
/// (docs/building.md). Returns how many bytes were dropped.
///
/// Only whole pages inside the tables, of a read-only segment the program maps from its file, are
/// dropped, so what the kernel frees is clean file-backed memory: were anything to read the tables again
/// (lazy binding, which `flagpole` does not use), the pages come back from the file unchanged. Returns 0
/// where there is nothing to drop (no tables, a table smaller than a page, another platform).
pub fn drop_relocation_tables() -> usize {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        let page = rustix::param::page_size();
        let mut dropped = 0;
        for range in relocation_tables::read_only_ranges() {
            let start = range.start.next_multiple_of(page);
            let end = range.end / page * page;
            if end <= start {
                continue;
            }
            // SAFETY: `start..end` lies inside a mapped, read-only, file-backed segment of the program
            // (checked by `read_only_ranges`), which no one ever writes; dropping clean pages of a
            // private file mapping only makes the next read fetch them from the file again.
            let advised = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if advised == 0 {
                dropped += end - start;
            }
        }
        tracing::debug!(
            bytes = dropped,
            "dropped the relocation tables read at start"
        );
        dropped
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    {
        0
    }
}

/// Finding the program's relocation tables through its dynamic section.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod relocation_tables {
    use std::ops::Range;

    /// One entry of the dynamic section (`Elf64_Dyn`: a tag, then a value or address).
    #[repr(C)]
    struct Dynamic {
        tag: i64,
        value: u64,
    }

    // Dynamic section tags (the ELF specification; `DT_RELR*` from the gABI's 2022 addition).
    const DT_NULL: i64 = 0;
    const DT_PLTRELSZ: i64 = 2;
    const DT_RELA: i64 = 7;
    const DT_RELASZ: i64 = 8;
    const DT_REL: i64 = 17;
    const DT_RELSZ: i64 = 18;
    const DT_JMPREL: i64 = 23;
    const DT_RELRSZ: i64 = 35;
    const DT_RELR: i64 = 36;

    /// The address ranges of the main program's relocation tables (`DT_RELA`, `DT_REL`, `DT_RELR`,
    /// `DT_JMPREL`) that lie wholly inside one of its loaded segments that is not writable.
    pub(super) fn read_only_ranges() -> Vec<Range<usize>> {
        let mut found = Vec::new();
        // SAFETY: dl_iterate_phdr calls `first_object` with a pointer to a valid `dl_phdr_info` and
        // passes our `&mut Vec` back untouched as `data`.
        unsafe {
            libc::dl_iterate_phdr(Some(first_object), (&raw mut found).cast());
        }
        found
    }

    /// Reads the first object dl_iterate_phdr reports — the main program — and stops.
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `info` is valid for this call and `data` is the `Vec` passed by `read_only_ranges`.
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Vec<Range<usize>>>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: the loader reports `dlpi_phnum` program headers at `dlpi_phdr`.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr as usize;
        let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
            return 1;
        };
        let read_only: Vec<Range<usize>> = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
            .map(|h| base + h.p_vaddr as usize..base + (h.p_vaddr + h.p_filesz) as usize)
            .collect();
        let mut entries = (base + dynamic.p_vaddr as usize) as *const Dynamic;
        let (mut rela, mut rel, mut relr, mut jmprel) = ((0, 0), (0, 0), (0, 0), (0, 0));
        // SAFETY: the dynamic section is mapped and ends with a DT_NULL entry.
        unsafe {
            while (*entries).tag != DT_NULL {
                let (tag, value) = ((*entries).tag, (*entries).value as usize);
                match tag {
                    DT_RELA => rela.0 = value,
                    DT_RELASZ => rela.1 = value,
                    DT_REL => rel.0 = value,
                    DT_RELSZ => rel.1 = value,
                    DT_JMPREL => jmprel.0 = value,
                    DT_PLTRELSZ => jmprel.1 = value,
                    DT_RELR => relr.0 = value,
                    DT_RELRSZ => relr.1 = value,
                    _ => {}
                }
                entries = entries.add(1);
            }
        }
        for (address, size) in [rela, rel, relr, jmprel] {
            if address == 0 || size == 0 {
                continue;
            }
            // glibc's loader rewrites these entries of the main program to absolute addresses; musl's
            // static start-up leaves them relative to the load address.
            let start = if address >= base {
                address
            } else {
                base + address
            };
            let range = start..start + size;
            if read_only
                .iter()
                .any(|segment| segment.start <= range.start && range.end <= segment.end)
            {
                found.push(range);
            }
        }
        1
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

    /// Whether the page holding `address` is mapped into this process now (`/proc/self/pagemap`).
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn resident(address: usize) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        let index = (address / rustix::param::page_size()) as u64;
        pagemap.seek(SeekFrom::Start(index * 8)).expect("seek");
        let mut entry = [0u8; 8];
        pagemap.read_exact(&mut entry).expect("read");
        u64::from_le_bytes(entry) >> 63 == 1
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn relocation_tables_are_dropped_and_read_back_unchanged() {
        let ranges = relocation_tables::read_only_ranges();
        let largest = ranges
            .iter()
            .max_by_key(|range| range.len())
            .cloned()
            .expect("a test binary is position-independent and has relocation tables");
        let page = rustix::param::page_size();
        assert!(largest.len() > 2 * page, "{largest:?}");
        // SAFETY: the range lies in a mapped read-only segment of this program (read_only_ranges).
        let bytes = |range: &std::ops::Range<usize>| unsafe {
            std::slice::from_raw_parts(range.start as *const u8, range.len()).to_vec()
        };
        let before = bytes(&largest);
        let inner = largest.start.next_multiple_of(page);
        assert!(resident(inner), "just read");
        let dropped = drop_relocation_tables();
        assert!(
            dropped >= largest.len() - 2 * page,
            "{dropped} of {largest:?}"
        );
        assert!(!resident(inner), "the page was not dropped");
        assert_eq!(bytes(&largest), before, "the tables read back differently");
        assert!(resident(inner));
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
