//! Memory for the big tables the hot path reads at random, and a prefetch
//! hint for them.
//!
//! The conntrack table is about 100 MB at its default million entries and
//! every packet of a tracked flow reads one index slot and one entry in
//! it. With 4 KiB pages nearly each of those reads also misses the TLB
//! (in a VM, a two-dimensional page walk); measured on `nat/established_dnat`
//! that walk cost more than the rest of the NAT stage. DPDK and VPP put
//! such tables in huge pages for this reason. Here one region, 2 MiB
//! aligned, is advised `MADV_HUGEPAGE` before its first touch, so the
//! kernel backs it with transparent huge pages whether THP is `always` or
//! `madvise` (the Debian default); with THP `never` the advice is ignored
//! and the region is ordinary memory. The region is cut into equal
//! [`HugeChunk`]s, one per table (the shards of the shared conntrack),
//! which each own their part and free the region when the last one goes.
//!
//! ```
//! use podswitch_dataplane::mem::hugemem;
//!
//! let mut shards = hugemem::chunks(4, 1024, || 0u64);
//! shards[1][5] = 7;
//! assert_eq!(shards[1].len(), 1024);
//! assert_eq!(shards[1][5] + shards[0][5], 7);
//! ```
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::sync::Arc;

/// The huge page size regions are aligned to (x86-64 and most arm64 kernels).
pub const HUGE_PAGE: usize = 2 << 20;
/// Alignment of smaller regions: a cache line.
const CACHE_LINE: usize = 64;

/// One allocation, freed when the last chunk of it is dropped.
#[derive(Debug)]
pub(super) struct Region {
    pub(super) ptr: NonNull<u8>,
    pub(super) kind: RegionKind,
}

/// Where a region's memory came from, so it goes back the same way.
#[derive(Debug)]
pub(super) enum RegionKind {
    /// The global allocator, with this layout.
    Heap(Layout),
    /// A shared mapping of a file (`mmap`), of this many bytes.
    Mapped(usize),
}

// SAFETY: the region is plain memory; which thread frees it does not matter.
unsafe impl Send for Region {}
// SAFETY: a region is never read or written through `&Region`, only through its chunks.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        match self.kind {
            // SAFETY: `ptr` came from `alloc(layout)` and is freed once, here.
            RegionKind::Heap(layout) => unsafe { dealloc(self.ptr.as_ptr(), layout) },
            // SAFETY: `ptr..ptr+len` is a mapping made by `mmap` and unmapped once, here.
            RegionKind::Mapped(len) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), len);
            },
        }
    }
}

/// A fixed-length slice of `T` in a region shared with other chunks; the
/// chunks of a region never overlap.
pub struct HugeChunk<T> {
    pub(super) _region: Arc<Region>,
    pub(super) ptr: NonNull<T>,
    pub(super) len: usize,
    pub(super) _owns: PhantomData<T>,
}

// SAFETY: a chunk owns its elements exclusively (as a `Box<[T]>` would).
unsafe impl<T: Send> Send for HugeChunk<T> {}
// SAFETY: `&HugeChunk` only gives `&[T]`.
unsafe impl<T: Sync> Sync for HugeChunk<T> {}

impl<T> core::fmt::Debug for HugeChunk<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HugeChunk")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for HugeChunk<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr..ptr+len` is initialised, inside the live region, and only this chunk has it.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeChunk<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow of the range.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// `count` chunks of `len` elements each, every one made by `fill`, in
/// one region: 2 MiB aligned and advised for huge pages when it is at
/// least 2 MiB, cache-line aligned otherwise. `T` must not need dropping
/// (plain data and atomics): the region is freed without dropping them.
///
/// # Panics
/// If the total size overflows `isize` (as `Vec` does); aborts if the
/// allocation fails (as `Vec` does).
pub fn chunks<T>(count: usize, len: usize, fill: impl Fn() -> T) -> Vec<HugeChunk<T>> {
    const {
        assert!(
            !core::mem::needs_drop::<T>(),
            "hugemem holds plain data only"
        )
    };
    let elements = count.checked_mul(len).expect("hugemem: size overflow");
    let bytes = elements
        .checked_mul(size_of::<T>())
        .expect("hugemem: size overflow")
        .max(1);
    let (size, align) = if bytes >= HUGE_PAGE {
        (bytes.next_multiple_of(HUGE_PAGE), HUGE_PAGE)
    } else {
        (bytes, CACHE_LINE.max(align_of::<T>()))
    };
    let layout = Layout::from_size_align(size, align).expect("hugemem: size overflow");
    // SAFETY: `layout` has a non-zero size.
    let Some(base) = NonNull::new(unsafe { alloc(layout) }) else {
        handle_alloc_error(layout)
    };
    if align == HUGE_PAGE {
        // Advice only: on failure (THP off) the memory is used as it is.
        // SAFETY: `base..base+size` is this allocation, page aligned, not yet touched.
        let _ = unsafe { libc::madvise(base.as_ptr().cast(), size, libc::MADV_HUGEPAGE) };
    }
    let first = base.cast::<T>();
    for i in 0..elements {
        // SAFETY: `i < elements` and the region holds `elements` aligned `T`s.
        unsafe { first.add(i).write(fill()) };
    }
    let region = Arc::new(Region {
        ptr: base,
        kind: RegionKind::Heap(layout),
    });
    (0..count)
        .map(|c| HugeChunk {
            _region: Arc::clone(&region),
            // SAFETY: `c * len + len <= elements`: the chunk lies inside the region.
            ptr: unsafe { first.add(c * len) },
            len,
            _owns: PhantomData,
        })
        .collect()
}

/// Asks the CPU to start loading the cache line at `addr` (a hint: it
/// never faults and changes nothing). For an address computed from a
/// table's base and a slot number, ahead of taking the table's lock.
#[inline(always)]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and has no architectural effect, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_disjoint_and_filled() {
        let mut c = chunks(3, 5, || 9u32);
        assert!(c.iter().all(|c| c.len() == 5 && c.iter().all(|&v| v == 9)));
        c[0][4] = 1;
        c[2][0] = 2;
        assert_eq!((c[0][4], c[1][4], c[1][0], c[2][0]), (1, 9, 9, 2));
        let (a, b) = (c[0].as_ptr() as usize, c[1].as_ptr() as usize);
        assert_eq!(b - a, 5 * size_of::<u32>());
    }

    #[test]
    fn a_big_region_is_huge_page_aligned_and_outlives_dropped_chunks() {
        let mut c = chunks(2, HUGE_PAGE / 8, || 3u64);
        assert_eq!(c[0].as_ptr() as usize % HUGE_PAGE, 0);
        let last = c.pop().expect("two chunks");
        drop(c);
        assert_eq!(last[HUGE_PAGE / 8 - 1], 3);
        prefetch(last.as_ptr() as usize);
        prefetch(0);
    }

    #[test]
    fn empty_chunks() {
        let c = chunks(4, 0, || 0u8);
        assert!(c.iter().all(|c| c.is_empty()));
        assert!(chunks(0, 10, || 0u8).is_empty());
    }
}
