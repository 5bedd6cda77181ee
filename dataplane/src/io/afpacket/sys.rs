//! The system calls behind [`super::AfPacketQueue`], one small function each,
//! plus the TPACKET_V3 ring mapping and the byte offsets used to read it.
//!
//! Everything here returns `io::Result` with the OS error; the caller says
//! which step failed. Ring headers are read through byte offsets taken from
//! the `libc` structs (`offset_of!`), so parsing a block needs no `unsafe`.

use std::ffi::CStr;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_void, sockaddr_ll, tpacket_block_desc, tpacket_hdr_v1, tpacket3_hdr};

/// `TPACKET_ALIGNMENT`: packet headers and data in a ring start on 16 bytes.
pub(super) const fn tpacket_align(x: usize) -> usize {
    (x + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}

/// `tpacket_block_desc.hdr.bh1.block_status` (`TP_STATUS_KERNEL`/`TP_STATUS_USER`).
pub(super) const BLOCK_STATUS: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, block_status);
/// `tpacket_block_desc.hdr.bh1.num_pkts`.
pub(super) const BLOCK_NUM_PKTS: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, num_pkts);
/// `tpacket_block_desc.hdr.bh1.offset_to_first_pkt`.
pub(super) const BLOCK_FIRST_PKT: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, offset_to_first_pkt);
/// Size of `tpacket3_hdr`, the per-packet header.
pub(super) const PKT_HDR_LEN: usize = size_of::<tpacket3_hdr>();
/// `tpacket3_hdr.tp_next_offset` (0 on the last packet of a block).
pub(super) const PKT_NEXT_OFFSET: usize = offset_of!(tpacket3_hdr, tp_next_offset);
/// `tpacket3_hdr.tp_snaplen`: bytes stored in the ring.
pub(super) const PKT_SNAPLEN: usize = offset_of!(tpacket3_hdr, tp_snaplen);
/// `tpacket3_hdr.tp_len`: bytes on the wire.
pub(super) const PKT_LEN: usize = offset_of!(tpacket3_hdr, tp_len);
/// `tpacket3_hdr.tp_mac`: offset of the MAC header from the packet header.
pub(super) const PKT_MAC: usize = offset_of!(tpacket3_hdr, tp_mac);
/// `tpacket3_hdr.tp_status`.
pub(super) const PKT_STATUS: usize = offset_of!(tpacket3_hdr, tp_status);
/// `TP_STATUS_GSO_TCP` (`include/uapi/linux/if_packet.h`; not in libc): the
/// packet is a TCP GSO super-frame.
pub(super) const TP_STATUS_GSO_TCP: u32 = 1 << 8;
/// `sockaddr_ll.sll_pkttype`; the kernel puts a `sockaddr_ll` right after
/// the aligned `tpacket3_hdr` (`tpacket_rcv`: `h.raw + TPACKET_ALIGN(hdrlen)`).
pub(super) const PKT_TYPE: usize =
    tpacket_align(PKT_HDR_LEN) + offset_of!(sockaddr_ll, sll_pkttype);
/// Smallest frame the kernel accepts in the ring request (`po->tp_hdrlen` for V3).
pub(super) const MIN_FRAME_SIZE: usize = libc::TPACKET3_HDRLEN;

/// Fanout mode: one socket per worker, the kernel picks by flow hash and
/// reassembles IP fragments first so they follow their flow.
pub(super) const FANOUT_HASH_DEFRAG: u32 =
    libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;

/// Converts a `-1` return into the thread's OS error.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The page size; ring blocks must be a multiple of it.
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant and has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// `if_nametoindex`: the index of interface `name` in the calling thread's namespace.
pub(super) fn interface_index(name: &CStr) -> io::Result<u32> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// Whether an interface with index `index` exists in the calling thread's namespace.
pub(super) fn interface_exists(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write.
    !unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null()
}

/// `getsockopt(SO_ERROR)`: the socket's pending error, which reading clears.
pub(super) fn take_socket_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut error: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `error` and `len` are valid for writes and `len` holds the size of `error`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut c_int).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok((error != 0).then(|| io::Error::from_raw_os_error(error)))
}

/// `socket(AF_PACKET, SOCK_RAW, 0)`, non-blocking and close-on-exec.
///
/// Protocol 0 means the socket receives nothing until [`bind_packet`]
/// names a protocol and an interface, so the ring does not fill with other
/// interfaces' traffic while it is being set up.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, SOL_PACKET, name, value)`.
pub(super) fn set_packet_option<T: Copy>(
    fd: BorrowedFd<'_>,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    set_option(fd, libc::SOL_PACKET, name, value)
}

/// Sets the receive buffer to `bytes`: `SO_RCVBUFFORCE` (root, above
/// `rmem_max`), falling back to `SO_RCVBUF`.
pub(super) fn set_receive_buffer(fd: BorrowedFd<'_>, bytes: c_int) -> io::Result<()> {
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
        .or_else(|_| set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
}

/// `setsockopt(fd, level, name, value)`.
fn set_option<T: Copy>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call; the kernel only reads them.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            len,
        )
    })?;
    Ok(())
}

/// `getsockopt(PACKET_STATISTICS)` for a TPACKET_V3 socket; the kernel resets
/// its counters on every read.
pub(super) fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<libc::tpacket_stats_v3> {
    let mut stats = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes and `len` holds the size of `stats`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats_v3).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(stats)
}

/// `bind` to interface `ifindex`, receiving every protocol (`ETH_P_ALL`).
pub(super) fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let addr = sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: c_int::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `sendmmsg(fd, msgs, MSG_DONTWAIT)`: returns how many messages were sent.
pub(super) fn send_messages(fd: BorrowedFd<'_>, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let count = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
    // SAFETY: `msgs` holds `count` initialised headers whose iovecs point to
    // live buffers (guaranteed by the caller, who owns them for the call);
    // the kernel writes only `msg_len` fields inside `msgs`.
    let sent = check(unsafe {
        libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), count, libc::MSG_DONTWAIT)
    })?;
    Ok(sent as usize)
}

/// `recvmmsg(fd, msgs, MSG_DONTWAIT)`: returns how many messages were
/// received; 0 when none is waiting.
pub(super) fn recv_messages(fd: BorrowedFd<'_>, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let count = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
    // SAFETY: `msgs` holds `count` initialised headers whose iovecs point to
    // live, exclusively borrowed buffers (guaranteed by the caller for the
    // call); the kernel writes only into those buffers and the headers.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            count,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    match check(rc) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// The shared memory of a receive ring: `block_count` blocks of `block_size` bytes.
///
/// Block ownership is handed back and forth through each block's
/// `block_status`: while it reads `TP_STATUS_USER`, the kernel does not touch
/// the block and user space may read it; storing `TP_STATUS_KERNEL` gives it
/// back. [`RingMap::user_block`] borrows `&self` and [`RingMap::release`]
/// takes `&mut self`, so no slice of a block outlives its release.
pub(super) struct RingMap {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
}

// SAFETY: the mapping is owned by this value alone (nothing else holds its
// address), and all access goes through `&self`/`&mut self`; moving it to
// another thread moves that exclusive ownership with it.
unsafe impl Send for RingMap {}

impl RingMap {
    /// `mmap` the ring the kernel allocated for `fd` with `PACKET_RX_RING`.
    pub(super) fn map(
        fd: BorrowedFd<'_>,
        block_size: usize,
        block_count: usize,
    ) -> io::Result<RingMap> {
        let len = block_size
            .checked_mul(block_count)
            .ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the socket's ring at a kernel-chosen
        // address; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(addr.cast::<u8>()).ok_or(io::ErrorKind::AddrNotAvailable)?;
        Ok(RingMap {
            base,
            block_size,
            block_count,
        })
    }

    /// Number of blocks.
    pub(super) fn block_count(&self) -> usize {
        self.block_count
    }

    /// The status word of block `index` (`index < block_count`).
    fn status(&self, index: usize) -> &AtomicU32 {
        debug_assert!(index < self.block_count);
        // SAFETY: `index < block_count`, so the word lies inside the mapping;
        // blocks start page-aligned and BLOCK_STATUS is a multiple of 4, so it
        // is aligned for AtomicU32; the kernel also accesses it only atomically
        // (with barriers), so an atomic view is the right model.
        unsafe {
            AtomicU32::from_ptr(
                self.base
                    .as_ptr()
                    .add(index * self.block_size + BLOCK_STATUS)
                    .cast::<u32>(),
            )
        }
    }

    /// Block `index` as bytes, if user space owns it (`TP_STATUS_USER`).
    pub(super) fn user_block(&self, index: usize) -> Option<&[u8]> {
        if index >= self.block_count
            || self.status(index).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0
        {
            return None;
        }
        // SAFETY: the block lies inside the mapping (`index < block_count`);
        // the acquire load saw TP_STATUS_USER, so the kernel has finished
        // writing it and will not write it again until `release`, which needs
        // `&mut self` and therefore ends this borrow first.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(index * self.block_size),
                self.block_size,
            )
        })
    }

    /// Hands block `index` back to the kernel.
    pub(super) fn release(&mut self, index: usize) {
        if index < self.block_count {
            self.status(index)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base`/len describe the mapping made in `map`, and no borrow
        // of it can outlive `self`.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast::<c_void>(),
                self.block_size * self.block_count,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets of `include/uapi/linux/if_packet.h` on 64-bit Linux: these are
    /// what the ring walk reads, so a libc layout change must fail here.
    #[test]
    fn ring_layout_matches_the_kernel_header() {
        assert_eq!(BLOCK_STATUS, 8);
        assert_eq!(BLOCK_NUM_PKTS, 12);
        assert_eq!(BLOCK_FIRST_PKT, 16);
        assert_eq!(PKT_HDR_LEN, 48);
        assert_eq!(PKT_NEXT_OFFSET, 0);
        assert_eq!(PKT_SNAPLEN, 12);
        assert_eq!(PKT_LEN, 16);
        assert_eq!(PKT_MAC, 24);
        assert_eq!(PKT_STATUS, 20);
        assert_eq!(TP_STATUS_GSO_TCP, 0x100);
        assert_eq!(PKT_TYPE, 48 + 10);
        assert_eq!(MIN_FRAME_SIZE, 68);
    }

    #[test]
    fn kernel_constants() {
        assert_eq!(libc::tpacket_versions::TPACKET_V3 as c_int, 2);
        assert_eq!(libc::PACKET_VNET_HDR, 15);
        assert_eq!(libc::PACKET_FANOUT, 18);
        assert_eq!(libc::PACKET_QDISC_BYPASS, 20);
        assert_eq!(libc::PACKET_IGNORE_OUTGOING, 23);
        assert_eq!(FANOUT_HASH_DEFRAG, 0x8000);
        assert_eq!(libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING, 0x4000);
        assert_eq!(tpacket_align(68), 80);
    }
}
