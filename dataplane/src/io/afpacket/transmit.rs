//! Transmit: frames queued in one arena and sent with one `sendmmsg`,
//! large ones sent at once from their own buffer (see the parent module).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

use super::{AfPacketQueue, TX_ARENA_LEN, TX_BATCH, TX_DIRECT_MIN, sys};
use crate::io::vnet::{self, VNET_HDR_LEN_LEGACY};
use crate::packet::Frame;

/// Frames waiting for [`PortQueue::flush`](crate::io::PortQueue::flush):
/// copies in one arena, and where each is.
pub(super) struct TxQueue {
    arena: Box<[u8]>,
    used: usize,
    /// (start, length) in `arena` of each queued message.
    msgs: [(usize, usize); TX_BATCH],
    count: usize,
}

impl TxQueue {
    pub(super) fn new() -> TxQueue {
        TxQueue {
            arena: vec![0; TX_ARENA_LEN].into_boxed_slice(),
            used: 0,
            msgs: [(0, 0); TX_BATCH],
            count: 0,
        }
    }

    fn has_room(&self, len: usize) -> bool {
        self.count < TX_BATCH && self.used + len <= self.arena.len()
    }

    fn clear(&mut self) {
        self.used = 0;
        self.count = 0;
    }
}

/// What a failed `sendmmsg` means for the messages not yet sent.
enum SendFailure {
    /// This message is bad (too long, bad vnet header): drop it, send the rest.
    Message,
    /// The socket or device cannot take more now: drop the rest.
    Full,
    /// Anything else: drop the rest and report the error.
    Socket,
}

fn classify(err: &io::Error) -> SendFailure {
    match err.raw_os_error() {
        Some(libc::EMSGSIZE | libc::EINVAL | libc::EFAULT) => SendFailure::Message,
        Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO | libc::EINTR) => {
            SendFailure::Full
        }
        _ => SendFailure::Socket,
    }
}

impl AfPacketQueue {
    /// Sends `msgs` (the queued messages) with as few `sendmmsg` calls as
    /// possible, counting what was sent and what was dropped.
    fn send_queued(&mut self, msgs: &mut [libc::mmsghdr]) -> io::Result<()> {
        let count = msgs.len();
        let mut next = 0;
        // Each pass sends at least one message or drops at least one: at most `count` passes.
        while next < count {
            match sys::send_messages(self.fd.as_fd(), &mut msgs[next..]) {
                // After a partial send the error of the first unsent message is
                // lost; the next pass starts with it and gets the error back.
                Ok(sent) if sent > 0 => {
                    self.stats.tx_packets += sent as u64;
                    next += sent;
                }
                Ok(_) => break,
                Err(err) => match classify(&err) {
                    SendFailure::Message => {
                        if err.raw_os_error() == Some(libc::EMSGSIZE) {
                            self.stats.tx_too_big += 1;
                        }
                        self.count_unsent(1);
                        next += 1;
                    }
                    SendFailure::Full => break,
                    SendFailure::Socket => {
                        self.count_unsent(count - next);
                        return Err(err);
                    }
                },
            }
        }
        self.count_unsent(count - next);
        Ok(())
    }
}

impl AfPacketQueue {
    /// Sends `frame` with its vnet header straight from the frame's buffer,
    /// after the frames queued before it: a large frame is not copied into
    /// the arena (the kernel copies it once, as it does a TAP write).
    fn send_now(&mut self, frame: &Frame) -> io::Result<()> {
        self.flush_before_send()?;
        let mut hdr = [0u8; VNET_HDR_LEN_LEGACY];
        let hdr = &mut hdr[..self.vnet_len];
        if !hdr.is_empty() {
            vnet::encode(&frame.offload, hdr);
        }
        // sendmmsg only reads through iov_base; *mut is just the C type.
        let iovecs = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.data().as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            },
        ];
        let parts = if hdr.is_empty() {
            &iovecs[1..]
        } else {
            &iovecs[..]
        };
        // SAFETY: mmsghdr is plain C data for which all-zero bytes are valid
        // (null pointers, zero lengths).
        let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        msg.msg_hdr.msg_iov = parts.as_ptr().cast_mut();
        msg.msg_hdr.msg_iovlen = parts.len();
        // The header and the frame are not touched until the send is over.
        let (sent, unsent) = (self.stats.tx_packets, self.stats.tx_unsent);
        let result = self.send_queued(std::slice::from_mut(&mut msg));
        self.stats.tx_direct += self.stats.tx_packets - sent;
        if result.is_err() {
            // `send` answers this frame's error itself, and the caller
            // counts the drop: it is not one `send` took (`tx_unsent`, which
            // the device drops report again).
            self.stats.tx_unsent = unsent;
        }
        result
    }

    /// Sends the queued frames before the frame `send` is given: if that
    /// fails, that frame is not taken either (`send` answers the error and
    /// the caller counts it), and it is counted only in `tx_errors`.
    fn flush_before_send(&mut self) -> io::Result<()> {
        self.flush_queued()
            .inspect_err(|_| self.stats.tx_errors += 1)
    }

    /// Counts `n` frames `send` took that will not go out.
    pub(super) fn count_unsent(&mut self, n: usize) {
        self.stats.tx_errors += n as u64;
        self.stats.tx_unsent += n as u64;
    }
}

impl AfPacketQueue {
    /// [`PortQueue::send`](crate::io::PortQueue::send): queues `frame` in
    /// the arena, or sends it at once when it is large.
    pub(super) fn queue_frame(&mut self, frame: &Frame) -> io::Result<()> {
        if frame.len() >= TX_DIRECT_MIN {
            return self.send_now(frame);
        }
        let len = self.vnet_len + frame.len();
        if len > self.tx.arena.len() {
            self.count_unsent(1);
            return Ok(());
        }
        if !self.tx.has_room(len) {
            self.flush_before_send()?;
        }
        let tx = &mut self.tx;
        let (Some(dst), Some(msg)) = (
            tx.arena.get_mut(tx.used..tx.used + len),
            tx.msgs.get_mut(tx.count),
        ) else {
            self.count_unsent(1);
            return Ok(());
        };
        let (hdr, data) = dst.split_at_mut(self.vnet_len);
        if !hdr.is_empty() {
            vnet::encode(&frame.offload, hdr);
        }
        data.copy_from_slice(frame.data());
        *msg = (tx.used, len);
        tx.used += len;
        tx.count += 1;
        Ok(())
    }

    /// [`PortQueue::flush`](crate::io::PortQueue::flush): sends the queued frames.
    pub(super) fn flush_queued(&mut self) -> io::Result<()> {
        let count = self.tx.count;
        if count == 0 {
            return Ok(());
        }
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; TX_BATCH];
        // SAFETY: mmsghdr is plain C data for which all-zero bytes are valid
        // (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        for ((&(start, len), iov), msg) in
            self.tx.msgs[..count].iter().zip(&mut iovecs).zip(&mut msgs)
        {
            // sendmmsg only reads through iov_base; *mut is just the C type.
            iov.iov_base = self.tx.arena[start..start + len].as_ptr().cast_mut().cast();
            iov.iov_len = len;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // The arena is not touched again until the send is over; the iovecs
        // stay on this stack frame until then.
        let result = self.send_queued(&mut msgs[..count]);
        self.tx.clear();
        result
    }
}
