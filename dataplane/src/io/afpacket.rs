#![allow(unsafe_code)]
//! AF_PACKET ports: a TPACKET_V3 receive ring and batched `sendmmsg`
//! transmit on one interface, one socket per worker in a fanout group.
//!
//! Written by hand on `libc` because no maintained crate does this right:
//! `pnet_datalink` reads one packet per `recvfrom`, and `netring` (the only
//! live TPACKET_V3 crate) has no `PACKET_VNET_HDR` and needs a newer Rust
//! than ours (see `shared/research/rust-ecosystem.md`, A2).
//!
//! How the socket is set up, in the order the kernel needs:
//!
//! 1. `socket(AF_PACKET, SOCK_RAW, 0)`, non-blocking; protocol 0 so nothing
//!    is queued until the bind below.
//! 2. `PACKET_VERSION = TPACKET_V3`.
//! 3. `PACKET_VNET_HDR`, which the kernel refuses once a ring exists. With
//!    it, each received packet has a 10-byte `virtio_net_hdr` right before
//!    its MAC header in the ring (at `tp_mac - 10`), and each sent message
//!    starts with one. That is how GSO super-frames and partial checksums
//!    cross the socket unchanged. If the kernel refuses, the queue runs
//!    without it and [`PortQueue::accepts_offload`] says false.
//! 4. `PACKET_RX_RING` (`tpacket_req3`) and `mmap`.
//! 5. `bind` to the interface with `ETH_P_ALL`.
//! 6. `PACKET_IGNORE_OUTGOING`, then `PACKET_FANOUT` with
//!    `HASH | DEFRAG | IGNORE_OUTGOING`. A fanout group receives through
//!    its own hook, so the socket option alone would not stop the group
//!    from seeing the node's transmissions; the fanout flag does.
//! 7. `PACKET_QDISC_BYPASS` for transmit (optional, like the vnet header).
//!
//! Receive walks the blocks that the kernel has handed to user space
//! (`TP_STATUS_USER`). It copies each packet into a free slot of the batch
//! and gives a block back once every packet in it has been taken. When the
//! batch fills mid-block, the position is kept for the next call.
//! Transmit copies each frame (behind its vnet header) into a preallocated
//! arena. [`PortQueue::flush`] then sends the whole arena, up to
//! [`TX_BATCH`] messages, with one `sendmmsg`. A frame of
//! [`TX_DIRECT_MIN`] bytes or more (a GSO super-frame) is sent at once from
//! its own buffer, after the queued ones, and so copied only by the kernel. A partial send hides the
//! error of the first unsent message, so the next call starts with that
//! message. If the kernel refuses it (`EMSGSIZE`, `EINVAL`), only that
//! frame is dropped. If the socket is full (`EAGAIN`, `ENOBUFS`), the rest
//! of the batch is dropped. Every drop bumps a counter in [`AfPacketStats`],
//! and the worker counts them as drops through
//! [`PortQueue::take_device_drops`] (`tx_too_big` for `EMSGSIZE`).
//!
//! Seen on Linux 6.18 over veth (the tests check each point):
//!
//! - **Receive.** With vnet headers, `tp_mac` is 92 instead of 82, and the
//!   10 bytes before it hold the header. TCP GSO super-frames arrive whole,
//!   e.g. `gso_type` TCPV4, `gso_size` 1448, `hdr_len` 66, and a partial
//!   checksum at (34, 16).
//! - **Transmit, partial checksum.** A frame sent with a partial checksum
//!   crosses a veth still partial when tx checksumming is on. With it off
//!   (`ethtool -K tx off`), the kernel completes the checksum before the
//!   driver.
//! - **Transmit, qdisc bypass.** Frames sent with qdisc bypass are not
//!   seen by other packet sockets on the sending interface. Without it,
//!   they see them as `PACKET_OUTGOING`.
//!
//! ```no_run
//! use podswitch_dataplane::io::{AfPacketOptions, AfPacketQueue, PortQueue};
//! use podswitch_dataplane::packet::{Batch, PortId, MAX_FRAME_LEN};
//!
//! let mut opts = AfPacketOptions::new("eth0");
//! opts.fanout_group = Some(1);
//! let mut queue = AfPacketQueue::open(&opts)?;
//! let mut batch = Batch::new(MAX_FRAME_LEN);
//! let received = queue.recv_batch(&mut batch, PortId(0), 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::io::vnet::{self, VNET_HDR_LEN_LEGACY, VNET_HDR_LEN_TUNNEL};
use crate::io::{DeviceDrops, PortQueue, TunnelTx};
use crate::packet::{Batch, Frame, PortId};
use ring::{copy_packet, read_u32, ring_packet};

mod ring;
mod sys;
#[cfg(test)]
mod tests;
mod transmit;

use sys::RingMap;
use transmit::TxQueue;

/// Messages sent per `sendmmsg`.
pub const TX_BATCH: usize = 64;
/// Messages one `recvmmsg` reads at most.
const RX_MMSG_BATCH: usize = 64;
/// Receive buffer of a socket read with `recvmmsg` (no ring): 8 MiB.
const RX_SOCKET_BUFFER: libc::c_int = 8 << 20;
/// Bytes of frames (with their vnet headers) queued between flushes; a
/// frame that does not fit triggers a flush first.
pub const TX_ARENA_LEN: usize = 256 * 1024;
/// Frames at least this long are sent at once from where they are (after
/// the frames queued before them), not copied into the arena: for a 64 KiB
/// GSO super-frame the copy costs more than a system call of its own.
pub const TX_DIRECT_MIN: usize = 16 * 1024;

/// Where and how to open one AF_PACKET queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Interface name, in the network namespace of the opening thread.
    pub ifname: String,
    /// Fanout group to join (hash of the flow, fragments reassembled); one
    /// socket per worker, all with the same group id.
    pub fanout_group: Option<u16>,
    /// Ask for virtio-net headers (GSO and partial checksums pass through).
    pub vnet_hdr: bool,
    /// Transmit straight to the driver, skipping the qdisc layer.
    pub qdisc_bypass: bool,
    /// Ring block size in bytes (a multiple of the page size; bounds the largest packet).
    pub block_size: u32,
    /// Number of ring blocks.
    pub block_count: u32,
    /// Nominal frame size of the ring request (V3 packs packets of any size;
    /// the kernel only checks the geometry).
    pub frame_size: u32,
    /// Milliseconds after which the kernel hands over a partly filled block.
    pub retire_timeout_ms: u32,
    /// Receive through the TPACKET_V3 mmap ring (true) or with `recvmmsg`
    /// into the batch's buffers (false, the default). The ring saves a copy
    /// but hands a block over only when it is full or `retire_timeout_ms`
    /// (at least 1 ms) has passed, which adds up to that much latency at low
    /// rates; `recvmmsg` wakes the worker per packet and still reads a whole
    /// batch per system call. Without vnet headers the ring is always used,
    /// because its status word is what tells a partial checksum.
    pub rx_ring: bool,
}

impl AfPacketOptions {
    /// Defaults for `ifname`: vnet headers and qdisc bypass on, no fanout,
    /// 8 blocks of 1 MiB, 2 KiB frames, 1 ms block timeout.
    pub fn new(ifname: impl Into<String>) -> AfPacketOptions {
        AfPacketOptions {
            ifname: ifname.into(),
            fanout_group: None,
            vnet_hdr: true,
            qdisc_bypass: true,
            block_size: 1 << 20,
            block_count: 8,
            frame_size: 2048,
            retire_timeout_ms: 1,
            rx_ring: false,
        }
    }

    /// Checks the ring geometry against the kernel's rules (`packet_set_ring`).
    fn validate(&self) -> Result<(), AfPacketError> {
        let invalid = |field, value: u32, reason| {
            Err(AfPacketError::InvalidOption {
                field,
                value,
                reason,
            })
        };
        let page = sys::page_size();
        if self.block_size == 0 || !(self.block_size as usize).is_multiple_of(page) {
            return invalid(
                "block_size",
                self.block_size,
                "must be a positive multiple of the page size",
            );
        }
        if self.block_count == 0 {
            return invalid("block_count", self.block_count, "must be at least 1");
        }
        if (self.frame_size as usize) < sys::MIN_FRAME_SIZE
            || !(self.frame_size as usize).is_multiple_of(libc::TPACKET_ALIGNMENT)
        {
            return invalid(
                "frame_size",
                self.frame_size,
                "must be a multiple of 16 and at least 80",
            );
        }
        if self.frame_size > self.block_size {
            return invalid("frame_size", self.frame_size, "must not exceed block_size");
        }
        let frames = u64::from(self.block_size / self.frame_size) * u64::from(self.block_count);
        let bytes = u64::from(self.block_size) * u64::from(self.block_count);
        if frames > u64::from(u32::MAX) || bytes > isize::MAX as u64 {
            return invalid("block_count", self.block_count, "makes the ring too large");
        }
        Ok(())
    }
}

/// Opening an AF_PACKET queue failed; the message names the step.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// An option the kernel would refuse.
    #[error("invalid AF_PACKET option {field} = {value}: {reason}")]
    InvalidOption {
        /// The option's field name.
        field: &'static str,
        /// The value given.
        value: u32,
        /// What the kernel requires.
        reason: &'static str,
    },
    /// The interface name contains a NUL byte.
    #[error("interface name {0:?} contains a NUL byte")]
    InterfaceName(String),
    /// No interface of that name in the current network namespace.
    #[error("looking up interface {ifname:?}")]
    UnknownInterface {
        /// The name looked up.
        ifname: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `socket(AF_PACKET)` failed (CAP_NET_RAW is needed).
    #[error("creating the AF_PACKET socket")]
    Socket(#[source] io::Error),
    /// The kernel refused `PACKET_VERSION = TPACKET_V3`.
    #[error("selecting TPACKET_V3 (PACKET_VERSION)")]
    Version(#[source] io::Error),
    /// The kernel refused the receive ring request.
    #[error("requesting the receive ring (PACKET_RX_RING)")]
    RxRing(#[source] io::Error),
    /// Mapping the receive ring failed.
    #[error("mapping the receive ring (mmap)")]
    Mmap(#[source] io::Error),
    /// Binding to the interface failed.
    #[error("binding to interface {ifname:?} (index {ifindex})")]
    Bind {
        /// The interface name.
        ifname: String,
        /// Its index.
        ifindex: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Joining the fanout group failed (a group with other flags, or another interface).
    #[error("joining fanout group {group} (PACKET_FANOUT)")]
    Fanout {
        /// The group id.
        group: u16,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What the kernel granted when the queue was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AfPacketCapabilities {
    /// Virtio-net headers on receive and transmit.
    pub vnet_hdr: bool,
    /// Transmit bypasses the qdisc layer.
    pub qdisc_bypass: bool,
    /// The kernel filters out outgoing packets (socket option, or fanout flag
    /// in a group); otherwise they are skipped in user space by packet type.
    pub ignore_outgoing: bool,
}

/// Counters of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AfPacketStats {
    /// Frames delivered into batches.
    pub rx_packets: u64,
    /// Packets the kernel dropped because the ring (or, without one, the
    /// socket buffer) was full (`PACKET_STATISTICS`).
    pub rx_drops_ring: u64,
    /// Packets skipped for a vnet header we cannot honour.
    pub rx_bad_vnet: u64,
    /// Packets skipped because they were truncated in the ring or larger than a frame buffer.
    pub rx_oversized: u64,
    /// Outgoing packets that still reached the ring, skipped.
    pub rx_outgoing: u64,
    /// Ring blocks given back early because a packet header pointed outside them.
    pub rx_bad_blocks: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Of those, the frames sent at once from their own buffer (at least
    /// [`TX_DIRECT_MIN`] bytes) rather than copied into the arena.
    pub tx_direct: u64,
    /// Frames given to `send` that were not sent: too large for the
    /// arena, refused by the kernel, or dropped when the socket was full.
    pub tx_errors: u64,
    /// Of those, the frames `send` took (it returned `Ok`) that did not go
    /// out: the caller learns of them only through
    /// [`PortQueue::take_device_drops`].
    pub tx_unsent: u64,
    /// Of those, the frames the kernel refused as longer than the
    /// interface takes (`EMSGSIZE`: its MTU, or a GSO segment's).
    pub tx_too_big: u64,
}

/// One AF_PACKET socket with its receive ring: one queue of one port.
pub struct AfPacketQueue {
    /// The receive ring, or `None` when receiving with `recvmmsg`.
    ring: Option<RingMap>,
    fd: OwnedFd,
    ifindex: u32,
    caps: AfPacketCapabilities,
    /// Vnet header bytes before each packet (0 or 10).
    vnet_len: usize,
    /// Next block to read.
    rx_block: usize,
    /// Position inside `rx_block` when the last call stopped mid-block:
    /// (offset of the next packet header, packets left).
    rx_pos: Option<(usize, u32)>,
    tx: TxQueue,
    stats: AfPacketStats,
    /// `stats` when [`PortQueue::take_device_drops`] last ran.
    stats_taken: AfPacketStats,
    /// Where whole UDP-tunnel super-frames go out of this interface
    /// instead (the overlay's transmit TAP, redirected here).
    tunnel: Option<TunnelTx>,
}

impl std::fmt::Debug for AfPacketQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketQueue")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("caps", &self.caps)
            .finish()
    }
}

impl AfPacketQueue {
    /// Opens a queue on `opts.ifname` in the calling thread's network namespace.
    pub fn open(opts: &AfPacketOptions) -> Result<AfPacketQueue, AfPacketError> {
        opts.validate()?;
        let name = CString::new(opts.ifname.as_str())
            .map_err(|_| AfPacketError::InterfaceName(opts.ifname.clone()))?;
        let ifindex =
            sys::interface_index(&name).map_err(|source| AfPacketError::UnknownInterface {
                ifname: opts.ifname.clone(),
                source,
            })?;
        let fd = sys::packet_socket().map_err(AfPacketError::Socket)?;
        let sock = fd.as_fd();
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        sys::set_packet_option(sock, libc::PACKET_VERSION, &version)
            .map_err(AfPacketError::Version)?;
        let (vnet_hdr, ring) = setup_receive(sock, opts)?;
        sys::bind_packet(sock, ifindex).map_err(|source| AfPacketError::Bind {
            ifname: opts.ifname.clone(),
            ifindex,
            source,
        })?;
        let mut ignore_outgoing =
            sys::set_packet_option(sock, libc::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int).is_ok();
        if let Some(group) = opts.fanout_group {
            ignore_outgoing = join_fanout(&fd, group)?;
        }
        let qdisc_bypass = opts.qdisc_bypass
            && sys::set_packet_option(sock, libc::PACKET_QDISC_BYPASS, &1 as &libc::c_int).is_ok();
        Ok(AfPacketQueue {
            ring,
            fd,
            ifindex,
            caps: AfPacketCapabilities {
                vnet_hdr,
                qdisc_bypass,
                ignore_outgoing,
            },
            vnet_len: if vnet_hdr { VNET_HDR_LEN_LEGACY } else { 0 },
            rx_block: 0,
            rx_pos: None,
            tx: TxQueue::new(),
            stats: AfPacketStats::default(),
            stats_taken: AfPacketStats::default(),
            tunnel: None,
        })
    }

    /// Sends whole UDP-tunnel super-frames through `tx`, a writer of a
    /// transmit TAP whose frames the kernel redirects out of this interface
    /// ([`PortQueue::send_tunnel_gso`]).
    pub fn set_tunnel_tx(&mut self, tx: TunnelTx) {
        self.tunnel = Some(tx);
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What the kernel granted at open.
    pub fn capabilities(&self) -> AfPacketCapabilities {
        self.caps
    }

    /// The counters, after adding the kernel's ring drops since the last call.
    pub fn stats(&mut self) -> AfPacketStats {
        if let Ok(kernel) = sys::packet_statistics(self.fd.as_fd()) {
            self.stats.rx_drops_ring += u64::from(kernel.tp_drops);
        }
        self.stats
    }
}

/// Asks for vnet headers (if `opts` wants them and the kernel takes them)
/// and sets up the receive path: a TPACKET_V3 ring, or a larger socket
/// buffer for `recvmmsg`. Returns (vnet headers on, the ring).
fn setup_receive(
    sock: std::os::fd::BorrowedFd<'_>,
    opts: &AfPacketOptions,
) -> Result<(bool, Option<RingMap>), AfPacketError> {
    // Must precede the ring: the kernel refuses it (EBUSY) afterwards.
    let vnet_hdr = opts.vnet_hdr
        && sys::set_packet_option(sock, libc::PACKET_VNET_HDR, &1 as &libc::c_int).is_ok();
    if vnet_hdr && !opts.rx_ring {
        // The socket buffer now absorbs bursts the ring would have held.
        sys::set_receive_buffer(sock, RX_SOCKET_BUFFER).map_err(AfPacketError::RxRing)?;
        return Ok((vnet_hdr, None));
    }
    let req = libc::tpacket_req3 {
        tp_block_size: opts.block_size,
        tp_block_nr: opts.block_count,
        tp_frame_size: opts.frame_size,
        tp_frame_nr: opts.block_size / opts.frame_size * opts.block_count,
        tp_retire_blk_tov: opts.retire_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    sys::set_packet_option(sock, libc::PACKET_RX_RING, &req).map_err(AfPacketError::RxRing)?;
    let map = RingMap::map(sock, opts.block_size as usize, opts.block_count as usize)
        .map_err(AfPacketError::Mmap)?;
    Ok((vnet_hdr, Some(map)))
}

/// Fills in the frames `recvmmsg` wrote (`received`: each message with its
/// vnet header), keeping them first in `slots`; counts and skips the
/// truncated ones and those with a bad vnet header. Returns how many it kept.
fn keep_received<'a>(
    received: impl Iterator<Item = (&'a libc::mmsghdr, &'a [u8; VNET_HDR_LEN_LEGACY])>,
    slots: &mut [Frame],
    stats: &mut AfPacketStats,
    (port, now_ns): (PortId, u64),
) -> usize {
    let mut kept = 0;
    for (i, (msg, hdr)) in received.enumerate() {
        let (len, flags) = (msg.msg_len as usize, msg.msg_hdr.msg_flags);
        let Ok(offload) = vnet::decode(hdr) else {
            stats.rx_bad_vnet += 1;
            continue;
        };
        if flags & libc::MSG_TRUNC != 0 || len < VNET_HDR_LEN_LEGACY {
            stats.rx_oversized += 1;
            continue;
        }
        // Close the gap left by dropped messages so kept frames stay first.
        slots.swap(kept, i);
        let frame = &mut slots[kept];
        frame.set_len(len - VNET_HDR_LEN_LEGACY);
        frame.offload = offload;
        frame.in_port = port;
        frame.timestamp_ns = now_ns;
        kept += 1;
    }
    kept
}

/// Joins fanout group `group`; returns whether the group ignores outgoing
/// packets (the flag is retried without on kernels that do not know it).
fn join_fanout(fd: &OwnedFd, group: u16) -> Result<bool, AfPacketError> {
    let arg = |flags: u32| (u32::from(group) | (flags << 16)) as libc::c_int;
    let with_ignore = sys::FANOUT_HASH_DEFRAG | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    match sys::set_packet_option(fd.as_fd(), libc::PACKET_FANOUT, &arg(with_ignore)) {
        Ok(()) => Ok(true),
        Err(first) if first.raw_os_error() == Some(libc::EINVAL) => sys::set_packet_option(
            fd.as_fd(),
            libc::PACKET_FANOUT,
            &arg(sys::FANOUT_HASH_DEFRAG),
        )
        .map(|()| false)
        .map_err(|source| AfPacketError::Fanout { group, source }),
        Err(source) => Err(AfPacketError::Fanout { group, source }),
    }
}

impl AfPacketQueue {
    /// Receives from the TPACKET_V3 ring.
    fn recv_ring(&mut self, batch: &mut Batch, port: PortId, now_ns: u64) -> io::Result<usize> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(0);
        };
        let mut received = 0;

        // Each pass finishes a block or stops: the bound only guards against a
        // ring whose every block is empty.
        for _ in 0..=ring.block_count() {
            if batch.rx_slot().is_none() {
                break;
            }
            let Some(block) = ring.user_block(self.rx_block) else {
                break;
            };
            let (mut offset, mut left) = self.rx_pos.take().unwrap_or_else(|| {
                let first = read_u32(block, sys::BLOCK_FIRST_PKT).unwrap_or(0);
                (
                    first as usize,
                    read_u32(block, sys::BLOCK_NUM_PKTS).unwrap_or(0),
                )
            });
            while left > 0 {
                let Some(frame) = batch.rx_slot() else { break };
                let Some(pkt) = ring_packet(block, offset, self.vnet_len)
                    .filter(|p| p.next_offset > 0 || left == 1)
                else {
                    // A header pointing outside the block: the rest cannot be trusted.
                    self.stats.rx_bad_blocks += 1;
                    left = 0;
                    break;
                };
                offset += pkt.next_offset;
                left -= 1;
                if copy_packet(&pkt, frame, self.vnet_len > 0, &mut self.stats) {
                    frame.in_port = port;
                    frame.timestamp_ns = now_ns;
                    batch.commit_rx();
                    received += 1;
                }
            }
            if left > 0 {
                self.rx_pos = Some((offset, left));
                break;
            }
            ring.release(self.rx_block);
            self.rx_block = (self.rx_block + 1) % ring.block_count();
        }
        self.stats.rx_packets += received as u64;
        Ok(received)
    }

    /// Receives up to a batch with one `recvmmsg`, straight into the
    /// batch's free buffers, each with its vnet header in front.
    fn recv_mmsg(&mut self, batch: &mut Batch, port: PortId, now_ns: u64) -> io::Result<usize> {
        let slots = batch.rx_free_slots();
        let n = slots.len().min(RX_MMSG_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let mut hdrs = [[0u8; VNET_HDR_LEN_LEGACY]; RX_MMSG_BATCH];
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovecs = [[empty; 2]; RX_MMSG_BATCH];
        // SAFETY: mmsghdr is plain C data for which all-zero bytes are valid
        // (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; RX_MMSG_BATCH] = unsafe { std::mem::zeroed() };
        for (((frame, hdr), iov), msg) in slots
            .iter_mut()
            .zip(&mut hdrs)
            .zip(&mut iovecs)
            .zip(&mut msgs)
            .take(n)
        {
            let buf = frame.reset_for_rx();
            iov[0] = libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            };
            iov[1] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            msg.msg_hdr.msg_iov = iov.as_mut_ptr();
            msg.msg_hdr.msg_iovlen = 2;
        }
        // The buffers and iovecs live on this frame and are not touched until the call returns.
        let got = sys::recv_messages(self.fd.as_fd(), &mut msgs[..n])?;
        let received = msgs[..got].iter().zip(&hdrs);
        let kept = keep_received(received, slots, &mut self.stats, (port, now_ns));
        batch.commit_rx_n(kept);
        self.stats.rx_packets += kept as u64;
        Ok(kept)
    }
}

impl PortQueue for AfPacketQueue {
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv_batch(&mut self, batch: &mut Batch, port: PortId, now_ns: u64) -> io::Result<usize> {
        if self.ring.is_none() {
            return self.recv_mmsg(batch, port, now_ns);
        }
        self.recv_ring(batch, port, now_ns)
    }

    fn send(&mut self, frame: &Frame) -> io::Result<()> {
        self.queue_frame(frame)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_queued()
    }

    fn accepts_offload(&self) -> bool {
        self.caps.vnet_hdr
    }

    fn sends_tunnel_gso(&self) -> bool {
        self.tunnel.is_some()
    }

    fn send_tunnel_gso(
        &mut self,
        vnet: &[u8; VNET_HDR_LEN_TUNNEL],
        outer: &[u8],
        inner: &[u8],
    ) -> io::Result<()> {
        // What `send` queued goes first, so a flow's frames keep their
        // order (frames the flush loses are counted by the device drops).
        let _ = self.flush();
        let Some(tunnel) = &self.tunnel else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        tunnel.send(vnet, outer, inner)
    }

    /// The kernel reports a deleted interface as `ENETDOWN` (as it does a
    /// link set down, which passes): gone when its index no longer exists.
    fn device_gone(&self, error: &io::Error) -> Option<&'static str> {
        let down = error.raw_os_error() == Some(libc::ENETDOWN);
        (down && !sys::interface_exists(self.ifindex)).then_some("the interface was deleted")
    }

    fn take_error(&mut self) -> Option<io::Error> {
        sys::take_socket_error(self.fd.as_fd()).unwrap_or_else(Some)
    }

    /// The kernel's drops (ring or socket buffer full, read with
    /// `PACKET_STATISTICS`), the packets skipped as unusable, and the frames
    /// `send` took that did not go out, since the last call.
    fn take_device_drops(&mut self) -> DeviceDrops {
        let (now, before) = (self.stats(), self.stats_taken);
        self.stats_taken = now;
        let unusable = |s: &AfPacketStats| s.rx_bad_vnet + s.rx_oversized + s.rx_bad_blocks;
        let too_big = now.tx_too_big - before.tx_too_big;
        DeviceDrops {
            errors: unusable(&now) - unusable(&before),
            dropped: now.rx_drops_ring - before.rx_drops_ring,
            tx_too_big: too_big,
            tx_failed: (now.tx_unsent - before.tx_unsent).saturating_sub(too_big),
        }
    }
}
