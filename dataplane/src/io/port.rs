//! What a worker needs from one queue of one port, whatever the device.
//!
//! A worker owns one [`PortQueue`] per port: for a TAP, one queue of the
//! multi-queue device; for an AF_PACKET port, one socket of the fanout
//! group. The worker polls [`PortQueue::poll_fd`], receives into the free
//! slots of its batch, runs the pipeline, and sends each verdict's frames
//! back out through the queues it owns, flushing once per batch.

use std::os::fd::RawFd;

use crate::packet::{Batch, Frame, PortId};

/// Frames a queue's device lost since the last
/// [`PortQueue::take_device_drops`], by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceDrops {
    /// Frames the device gave that were unusable: a vnet header we cannot
    /// honour, cut short, longer than a buffer, or a ring block that
    /// cannot be trusted.
    pub errors: u64,
    /// Frames the kernel dropped before we read them: the AF_PACKET ring
    /// or socket buffer was full.
    pub dropped: u64,
    /// Frames [`PortQueue::send`] took that the kernel then refused as
    /// longer than the device takes (`EMSGSIZE`).
    pub tx_too_big: u64,
    /// Other frames [`PortQueue::send`] took that did not go out (refused,
    /// or dropped when the socket was full or failed at flush).
    pub tx_failed: u64,
}

/// One queue of one port, owned by one worker.
pub trait PortQueue: Send {
    /// The file descriptor to poll for readability.
    fn poll_fd(&self) -> RawFd;

    /// Receives frames into the free receive slots of `batch` (as `port`,
    /// stamped `now_ns`), without blocking. Returns how many were received;
    /// `Ok(0)` when nothing is waiting.
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        port: PortId,
        now_ns: u64,
    ) -> std::io::Result<usize>;

    /// Sends `frame` or queues it for [`PortQueue::flush`]. A frame whose
    /// offload state this queue cannot express (see
    /// [`PortQueue::accepts_offload`]) must not be passed: the caller
    /// segments it and completes its checksums first.
    fn send(&mut self, frame: &Frame) -> std::io::Result<()>;

    /// Sends whatever [`PortQueue::send`] queued. Frames it could not
    /// send are reported by [`PortQueue::take_device_drops`]; the error
    /// says why.
    fn flush(&mut self) -> std::io::Result<()>;

    /// True when the device takes GSO super-frames and partial checksums
    /// (a vnet header is written with each frame).
    fn accepts_offload(&self) -> bool;

    /// True when [`PortQueue::send_tunnel_gso`] can send a UDP-tunnel
    /// super-frame whole (the uplink, with the overlay's transmit TAP).
    fn sends_tunnel_gso(&self) -> bool {
        false
    }

    /// Sends a UDP-tunnel super-frame whole, after what
    /// [`PortQueue::send`] queued (so a flow's frames keep their order):
    /// `vnet` is its tunnel vnet header ([`super::vnet::encode_tunnel`]),
    /// `outer` the outer headers, `inner` the inner frame. Only called
    /// when [`PortQueue::sends_tunnel_gso`] is true.
    fn send_tunnel_gso(
        &mut self,
        vnet: &[u8; super::vnet::VNET_HDR_LEN_TUNNEL],
        outer: &[u8],
        inner: &[u8],
    ) -> std::io::Result<()> {
        let _ = (vnet, outer, inner);
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// A descriptor of the same open queue, for the process that takes
    /// over from this one (`podswitchd run --takeover`); `None` for a queue
    /// that cannot be handed over (the new process opens its own).
    fn handover_fd(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }

    /// When `error` (from [`PortQueue::recv_batch`]) means the device is
    /// gone for good, why, in a few words; the worker then stops using this
    /// queue, which would otherwise poll ready forever. `None` for errors
    /// that may pass.
    fn device_gone(&self, error: &std::io::Error) -> Option<&'static str> {
        let _ = error;
        None
    }

    /// Takes the error the queue's fd polled with (`POLLERR`), if reading
    /// the queue would not return it (an AF_PACKET ring is read without a
    /// syscall, so its socket error would poll forever).
    fn take_error(&mut self) -> Option<std::io::Error> {
        None
    }

    /// The frames lost on receive since the last call (a few syscalls at
    /// most: the worker calls it a few times a second, not per batch).
    fn take_device_drops(&mut self) -> DeviceDrops {
        DeviceDrops::default()
    }
}
