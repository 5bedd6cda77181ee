//! Giving the heap's free memory back to the kernel.
//!
//! glibc's allocator keeps the pages of freed blocks for later allocations
//! (it returns only the top of each arena, and only past a threshold).
//! After the control plane replaces the state of 100,000 services, a few
//! hundred megabytes of freed blocks sit between live ones and still count
//! in the daemon's RSS. `malloc_trim(0)` hands every whole free page of
//! every arena back (`MADV_DONTNEED`); later allocations fault them in
//! again. It walks the free lists, so it is for after large changes, not
//! for every request. With another C library it does nothing.
#![allow(unsafe_code)]

/// Returns the heap's free pages to the kernel (glibc); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reorganises the allocator's own free lists;
    // it is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Most arenas the allocator keeps: one per thread that allocates at the
/// same time, up to the cores. glibc's default (eight per core) lets each
/// short-lived thread of an apply (decoding, checks, the store write, the
/// table builds) take an arena of its own, so the tables an apply keeps
/// end up spread over more heaps with the others' freed blocks between
/// them: about 70 bytes more per service at 100,000 services. The
/// dataplane's workers do not allocate while they forward. An operator's
/// `MALLOC_ARENA_MAX` is left as it is.
pub fn limit_arenas(threads: usize) {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let arenas = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is thread-safe
    // and M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_leaves_the_resident_set() {
        let rss = || {
            let status = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = status.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        };
        // Many small blocks, then every other one kept: the freed ones are
        // holes in the heap that glibc does not give back by itself.
        let blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 200]).collect();
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(64).collect();
        let before = rss();
        super::release_free_memory();
        let after = rss();
        assert_eq!(kept.len(), 3_125);
        assert!(
            before.saturating_sub(after) > 10 << 20,
            "RSS {before} -> {after}: freed pages not returned"
        );
    }
}
