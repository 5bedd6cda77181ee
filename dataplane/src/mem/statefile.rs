//! A file mapped shared (`MAP_SHARED`), so the tables in it outlive the
//! process: what a process wrote is in the file (the page cache) the
//! moment it wrote it, also when it is killed with `SIGKILL`, and the next
//! process maps the same pages.
//!
//! The file lives under the run directory on tmpfs, so it is memory, not
//! disk, and a reboot clears it. Its parts are handed out as
//! [`HugeChunk`]s like [`hugemem`](super::hugemem)'s: the hot path reads
//! them exactly as it reads anonymous memory. A part is taken with
//! [`StateFile::chunks`], of a type every bit pattern of which is a value
//! ([`AnyBits`]: integers, atomics, and plain structs of them such as a
//! conntrack entry): the bytes are used as they are, whatever the file
//! holds, and without writing them (a process taking over reads the
//! tables while the previous one still writes them). What the bytes mean
//! is checked by the tables' owners.
//!
//! Every part is handed out once ([`StateFile`] remembers the ranges), so
//! no two chunks ever alias. Huge pages: the mapping is advised
//! `MADV_HUGEPAGE`; on tmpfs the kernel honours it only when
//! `/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `advise` (or
//! `always`/`within_size`) or the mount has `huge=`: otherwise the tables
//! use 4 KiB pages (the README's "Restart and upgrade" says how to enable them).
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::hugemem::{HugeChunk, Region, RegionKind};

/// Types for which every bit pattern of their size is a valid value and
/// which need no drop: safe to read from a file whatever it holds.
///
/// # Safety
/// Implement only for such types (integers, atomics, arrays of them).
pub unsafe trait AnyBits: Sized {}

// SAFETY: integers and their atomics have no invalid bit patterns and no drop.
unsafe impl AnyBits for u8 {}
// SAFETY: as above.
unsafe impl AnyBits for u16 {}
// SAFETY: as above.
unsafe impl AnyBits for u32 {}
// SAFETY: as above.
unsafe impl AnyBits for u64 {}
// SAFETY: as above.
unsafe impl AnyBits for AtomicU32 {}
// SAFETY: as above.
unsafe impl AnyBits for AtomicU64 {}
// SAFETY: an array of such values is such a value.
unsafe impl<T: AnyBits, const N: usize> AnyBits for [T; N] {}

/// Why a part of the file could not be handed out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateFileError {
    /// The part reaches past the end of the file.
    #[error(
        "the part at byte {offset} ({bytes} bytes) reaches past the end of the file ({len} bytes)"
    )]
    OutOfBounds {
        /// Where the part starts.
        offset: usize,
        /// Its length.
        bytes: usize,
        /// The file's length.
        len: usize,
    },
    /// The part is not aligned for its type.
    #[error("the part at byte {0} is not aligned for its type")]
    Misaligned(usize),
    /// The part overlaps one handed out before.
    #[error("the part at byte {0} overlaps one already in use")]
    Overlaps(usize),
}

/// A mapped state file.
#[derive(Debug)]
pub struct StateFile {
    region: Arc<Region>,
    len: usize,
    path: PathBuf,
    /// Byte ranges handed out so far.
    taken: Mutex<Vec<(usize, usize)>>,
}

// SAFETY: the mapping is plain shared memory; parts are only reached through their chunks.
unsafe impl Send for StateFile {}
// SAFETY: `&StateFile` reads nothing of the mapping but through chunks handed out once.
unsafe impl Sync for StateFile {}

impl StateFile {
    /// Maps the existing file at `path`, whole.
    pub fn open(path: &Path) -> std::io::Result<StateFile> {
        let file = File::options().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        StateFile::map(&file, len, path)
    }

    /// Creates the file at `path` (replacing any), `len` zero bytes, and maps it.
    pub fn create(path: &Path, len: usize) -> std::io::Result<StateFile> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len as u64)?;
        StateFile::map(&file, len, path)
    }

    fn map(file: &File, len: usize, path: &Path) -> std::io::Result<StateFile> {
        if len == 0 {
            return Err(std::io::Error::other("the file is empty"));
        }
        // Populated at once: one pass over the page cache, not a fault per page.
        // SAFETY: a new shared mapping of an open file; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Advice only: ignored where tmpfs has no huge pages.
        // SAFETY: `ptr..ptr+len` is the mapping just made.
        let _ = unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(StateFile {
            region: Arc::new(Region {
                ptr,
                kind: RegionKind::Mapped(len),
            }),
            len,
            path: path.to_path_buf(),
            taken: Mutex::new(Vec::new()),
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: an empty file is refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reserves `offset..offset+bytes` for a part of `align`-aligned elements.
    fn take(&self, offset: usize, bytes: usize, align: usize) -> Result<(), StateFileError> {
        let end = offset
            .checked_add(bytes)
            .filter(|&end| end <= self.len)
            .ok_or(StateFileError::OutOfBounds {
                offset,
                bytes,
                len: self.len,
            })?;
        if !(self.region.ptr.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(StateFileError::Misaligned(offset));
        }
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if bytes > 0 && taken.iter().any(|&(s, e)| offset < e && s < end) {
            return Err(StateFileError::Overlaps(offset));
        }
        taken.push((offset, end));
        Ok(())
    }

    fn part<T>(&self, offset: usize, count: usize, len: usize) -> Result<usize, StateFileError> {
        let bytes = count
            .checked_mul(len)
            .and_then(|n| n.checked_mul(size_of::<T>()))
            .ok_or(StateFileError::OutOfBounds {
                offset,
                bytes: usize::MAX,
                len: self.len,
            })?;
        self.take(offset, bytes, align_of::<T>())?;
        Ok(count * len)
    }

    fn hand_out<T>(&self, offset: usize, count: usize, len: usize) -> Vec<HugeChunk<T>> {
        // SAFETY: `part` checked that `offset` plus the chunks lies inside the mapping.
        let first = unsafe { self.region.ptr.add(offset) }.cast::<T>();
        (0..count)
            .map(|c| HugeChunk {
                _region: Arc::clone(&self.region),
                // SAFETY: `c * len + len <= count * len`: the chunk lies inside the part.
                ptr: unsafe { first.add(c * len) },
                len,
                _owns: PhantomData,
            })
            .collect()
    }

    /// `count` chunks of `len` elements at byte `offset`, holding what the
    /// file holds there.
    pub fn chunks<T: AnyBits>(
        &self,
        offset: usize,
        count: usize,
        len: usize,
    ) -> Result<Vec<HugeChunk<T>>, StateFileError> {
        self.part::<T>(offset, count, len)?;
        Ok(self.hand_out(offset, count, len))
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds since boot: one clock for all
/// processes of a boot, so times kept in a state file stay right.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("podswitch-statefile-{}-{name}", std::process::id()))
    }

    #[test]
    fn what_one_mapping_writes_the_next_reads() {
        let path = temp("roundtrip");
        {
            let f = StateFile::create(&path, 8192).unwrap();
            let words = f.chunks::<AtomicU64>(0, 2, 8).unwrap();
            words[1][7].store(42, Ordering::Relaxed);
            let mut pairs = f.chunks::<[u32; 2]>(4096, 1, 4).unwrap();
            pairs[0][3] = [7, 9];
        }
        let f = StateFile::open(&path).unwrap();
        assert_eq!(f.len(), 8192);
        let words = f.chunks::<AtomicU64>(0, 2, 8).unwrap();
        assert_eq!(words[1][7].load(Ordering::Relaxed), 42);
        let pairs = f.chunks::<[u32; 2]>(4096, 1, 4).unwrap();
        assert_eq!((pairs[0].len(), pairs[0][3]), (4, [7, 9]));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn parts_are_checked_and_handed_out_once() {
        let path = temp("parts");
        let f = StateFile::create(&path, 4096).unwrap();
        assert!(matches!(
            f.chunks::<u64>(4000, 1, 100),
            Err(StateFileError::OutOfBounds { .. })
        ));
        assert_eq!(
            f.chunks::<u64>(3, 1, 1).unwrap_err(),
            StateFileError::Misaligned(3)
        );
        f.chunks::<u64>(0, 1, 8).unwrap();
        assert_eq!(
            f.chunks::<u32>(32, 1, 1).unwrap_err(),
            StateFileError::Overlaps(32)
        );
        assert!(StateFile::create(&path, 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = monotonic_now_ns();
        assert!(a > 0 && monotonic_now_ns() >= a);
    }
}
