//! Preallocated copy buffers, recycled between the workers and one consumer.
//!
//! Two bounded lock-free queues hold the same boxes: `free` (empty buffers)
//! and `full` (copies waiting for the consumer). A worker pops a free
//! buffer, copies into it and pushes it to `full`; the consumer pops it,
//! writes it out and gives it back. Nothing is allocated after
//! [`MirrorQueue::new`], and when no free buffer is left (the consumer is
//! slow) the copy is refused: the caller counts it as dropped.

use crossbeam_queue::ArrayQueue;

use super::MirrorNote;

/// Buffers per queue by default.
pub const DEFAULT_QUEUE_DEPTH: usize = 256;

/// One copied frame.
#[derive(Debug)]
pub struct MirrorRecord {
    buf: Box<[u8]>,
    len: usize,
    /// The frame's full length (the copy may be cut at the snap length).
    pub orig_len: u32,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// What the pipeline knew about the frame.
    pub note: MirrorNote,
}

impl MirrorRecord {
    /// The copied bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Copy buffers of one mirror output.
#[derive(Debug)]
pub struct MirrorQueue {
    free: ArrayQueue<Box<MirrorRecord>>,
    full: ArrayQueue<Box<MirrorRecord>>,
}

impl MirrorQueue {
    /// `depth` buffers of `buf_len` bytes each, allocated now.
    pub fn new(depth: usize, buf_len: usize) -> MirrorQueue {
        let depth = depth.max(1);
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            let record = Box::new(MirrorRecord {
                buf: vec![0u8; buf_len].into_boxed_slice(),
                len: 0,
                orig_len: 0,
                timestamp_ns: 0,
                note: MirrorNote::new(super::MirrorStage::Ingress, crate::packet::PortId(0)),
            });
            let _ = free.push(record);
        }
        MirrorQueue {
            free,
            full: ArrayQueue::new(depth),
        }
    }

    /// Copies `data` (cut to the buffer size) for the consumer; false when
    /// no buffer is free. Never blocks, never allocates.
    #[inline]
    pub fn push(&self, data: &[u8], orig_len: usize, timestamp_ns: u64, note: MirrorNote) -> bool {
        let Some(mut record) = self.free.pop() else {
            return false;
        };
        let len = data.len().min(record.buf.len());
        record.buf[..len].copy_from_slice(&data[..len]);
        record.len = len;
        record.orig_len = u32::try_from(orig_len).unwrap_or(u32::MAX);
        record.timestamp_ns = timestamp_ns;
        record.note = note;
        // `full` has room for every buffer, so this cannot fail; if it did,
        // the buffer would be lost, not the forwarding path stalled.
        self.full.push(record).is_ok()
    }

    /// The oldest waiting copy (consumer side).
    pub fn pop(&self) -> Option<Box<MirrorRecord>> {
        self.full.pop()
    }

    /// Gives a buffer back after writing it out.
    pub fn recycle(&self, record: Box<MirrorRecord>) {
        let _ = self.free.push(record);
    }

    /// Copies waiting for the consumer.
    pub fn pending(&self) -> usize {
        self.full.len()
    }
}
