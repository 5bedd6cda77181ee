//! Frame buffers and batches.
//!
//! A [`Frame`] is a preallocated buffer with headroom in front of the data
//! (room for a VXLAN header or a virtio-net header without a copy) and
//! tailroom behind it (room to grow a frame into an ICMP error). Frames are
//! allocated once per worker and moved, never reallocated, on the hot path.

use super::{PortId, Verdict};

/// Bytes reserved in front of the frame data.
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds by default: a 64 KiB GSO super-frame plus headers.
pub const MAX_FRAME_LEN: usize = 65_536 + 256;
/// Frames received per batch.
pub const BATCH_SIZE: usize = 32;

/// Kind of segmentation offload a frame asks for (virtio-net `gso_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GsoKind {
    /// An ordinary frame.
    #[default]
    None,
    /// A TCP/IPv4 super-frame to be cut into `gso_size` segments.
    TcpV4,
    /// A TCP/IPv6 super-frame.
    TcpV6,
    /// A UDP super-frame (USO, `VIRTIO_NET_HDR_GSO_UDP_L4`).
    UdpL4,
}

/// Offload state of a frame, as a virtio-net header describes it.
///
/// Frames read from a TAP or AF_PACKET socket with vnet headers may be GSO
/// super-frames (up to 64 KiB) and may carry a partial L4 checksum. The
/// pipeline switches and routes them as one unit; the output either hands
/// the same state to a port that takes offloads or completes the work in
/// software (`io::gso`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// Segmentation requested.
    pub gso: GsoKind,
    /// Payload bytes per segment (MSS for TCP).
    pub gso_size: u16,
    /// Length of the headers (Ethernet to the end of L4) repeated in every segment.
    pub hdr_len: u16,
    /// `Some((start, offset))`: the L4 checksum is partial (pseudo-header sum
    /// only); the real one is the sum from `start` to the end of the frame,
    /// stored at `start + offset`. Offsets are from the frame start.
    pub csum: Option<(u16, u16)>,
    /// The sender vouches that the checksums are valid (`DATA_VALID`).
    pub csum_valid: bool,
}

impl Offload {
    /// True when the frame needs segmentation or checksum completion before
    /// a port without offloads can send it.
    #[inline]
    pub fn needs_software(&self) -> bool {
        self.gso != GsoKind::None || self.csum.is_some()
    }
}

/// One frame in a preallocated buffer.
pub struct Frame {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
    /// The port the frame arrived on ([`PortId::LOCAL`] for frames the switch made).
    pub in_port: PortId,
    /// Capture timestamp (replay) or receive time, in nanoseconds.
    pub timestamp_ns: u64,
    /// Segmentation and checksum offload state.
    pub offload: Offload,
    /// Bytes of tunnel headers in front of an inner GSO super-frame (VXLAN
    /// overlay): `offload` then describes the inner frame, and the output
    /// cuts it with `overlay::segment_encapsulated`. 0 for every other frame.
    pub encap_len: u16,
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("in_port", &self.in_port)
            .field("len", &self.len)
            .finish()
    }
}

impl Frame {
    /// Allocates a buffer for frames up to `max_len` bytes.
    pub fn with_capacity(max_len: usize) -> Frame {
        Frame {
            buf: vec![0u8; HEADROOM + max_len].into_boxed_slice(),
            head: HEADROOM,
            len: 0,
            in_port: PortId::LOCAL,
            timestamp_ns: 0,
            offload: Offload::default(),
            encap_len: 0,
        }
    }

    /// Prepares the buffer for a receive: default headroom, empty frame, no
    /// offload state; returns the space after the headroom to read into,
    /// then call [`Frame::set_len`] with the bytes read.
    #[inline]
    pub fn reset_for_rx(&mut self) -> &mut [u8] {
        self.head = HEADROOM;
        self.len = 0;
        self.offload = Offload::default();
        self.encap_len = 0;
        &mut self.buf[HEADROOM..]
    }

    /// The frame bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The frame bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// Length of the frame.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes available from the current start to the end of the buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Resets the start to the default headroom and copies `bytes` in;
    /// false (and an empty frame) if they do not fit.
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        self.head = HEADROOM;
        self.encap_len = 0;
        match self.buf.get_mut(HEADROOM..HEADROOM + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = bytes.len();
                true
            }
            None => {
                self.len = 0;
                false
            }
        }
    }

    /// Grows or shrinks the frame at its end; false if `len` exceeds the capacity.
    /// Grown bytes keep whatever the buffer held.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.len = len;
        true
    }

    /// Opens `n` bytes in front of the data (for an outer header); false if
    /// the headroom is too small.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front (decapsulation); false if the frame is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    /// Removes the outermost 802.1Q tag (the 4 bytes after the two MACs),
    /// moving the MACs up; offload offsets keep pointing at the same bytes.
    /// False, and nothing changed, if the frame is shorter than a tagged header.
    pub fn remove_vlan_tag(&mut self) -> bool {
        const MACS_LEN: usize = 12;
        const TAG_LEN: usize = crate::wire::ethernet::VLAN_TAG_LEN;
        if self.len < MACS_LEN + TAG_LEN + 2 {
            return false;
        }
        let Some(header) = self.buf.get_mut(self.head..self.head + MACS_LEN + TAG_LEN) else {
            return false;
        };
        header.copy_within(..MACS_LEN, TAG_LEN);
        self.head += TAG_LEN;
        self.len -= TAG_LEN;
        let tag_len = TAG_LEN as u16;
        self.offload.csum = self
            .offload
            .csum
            .map(|(start, offset)| (start.saturating_sub(tag_len), offset));
        self.offload.hdr_len = self.offload.hdr_len.saturating_sub(tag_len);
        true
    }

    /// The whole buffer from the frame start to its end (data plus tailroom).
    #[inline]
    pub fn with_tailroom_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..]
    }
}

/// A batch of received frames plus the frames the pipeline generated while
/// processing them (ARP requests, released held packets), each with its verdict.
pub struct Batch {
    frames: Vec<Frame>,
    verdicts: Vec<Verdict>,
    rx: usize,
    len: usize,
}

impl Batch {
    /// A batch of [`BATCH_SIZE`] receive slots plus as many generated slots,
    /// each buffer `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Batch {
        Self::with_size(BATCH_SIZE, max_frame_len)
    }

    /// As [`Batch::new`] with `size` receive slots.
    pub fn with_size(size: usize, max_frame_len: usize) -> Batch {
        let slots = size * 2;
        Batch {
            frames: (0..slots)
                .map(|_| Frame::with_capacity(max_frame_len))
                .collect(),
            verdicts: vec![Verdict::Drop(super::DropReason::NotProcessed); slots],
            rx: 0,
            len: 0,
        }
    }

    /// The largest frame a slot holds.
    pub fn frame_capacity(&self) -> usize {
        self.frames.first().map_or(0, |f| f.buf.len() - HEADROOM)
    }

    /// Number of receive slots.
    pub fn rx_capacity(&self) -> usize {
        self.frames.len() / 2
    }

    /// Empties the batch.
    #[inline]
    pub fn clear(&mut self) {
        self.rx = 0;
        self.len = 0;
    }

    /// Copies a received frame in; false if the batch is full or the frame too large.
    pub fn push_rx(&mut self, in_port: PortId, timestamp_ns: u64, bytes: &[u8]) -> bool {
        if self.rx >= self.rx_capacity() || self.len != self.rx {
            return false;
        }
        let frame = &mut self.frames[self.rx];
        if !frame.fill(bytes) {
            return false;
        }
        frame.in_port = in_port;
        frame.timestamp_ns = timestamp_ns;
        frame.offload = Offload::default();
        self.rx += 1;
        self.len = self.rx;
        true
    }

    /// The next free receive slot, for I/O that reads straight into buffers;
    /// call [`Batch::commit_rx`] after filling it.
    pub fn rx_slot(&mut self) -> Option<&mut Frame> {
        if self.rx >= self.rx_capacity() || self.len != self.rx {
            return None;
        }
        self.frames.get_mut(self.rx)
    }

    /// All free receive slots at once, for I/O that fills several per
    /// system call (`recvmmsg`); call [`Batch::commit_rx_n`] with how many
    /// of them, from the first, were filled. Empty once generated frames exist.
    pub fn rx_free_slots(&mut self) -> &mut [Frame] {
        if self.len != self.rx {
            return &mut [];
        }
        let cap = self.rx_capacity();
        &mut self.frames[self.rx..cap]
    }

    /// Marks the first `n` slots returned by [`Batch::rx_free_slots`] as received.
    pub fn commit_rx_n(&mut self, n: usize) {
        if self.len == self.rx {
            self.rx = (self.rx + n).min(self.rx_capacity());
            self.len = self.rx;
        }
    }

    /// Marks the slot returned by [`Batch::rx_slot`] as received.
    pub fn commit_rx(&mut self) {
        if self.rx < self.rx_capacity() && self.len == self.rx {
            self.rx += 1;
            self.len = self.rx;
        }
    }

    /// Number of received frames.
    #[inline]
    pub fn rx_len(&self) -> usize {
        self.rx
    }

    /// Number of frames (received plus generated).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the batch holds no frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frame `i` and its verdict.
    #[inline]
    pub fn get(&self, i: usize) -> Option<(&Frame, Verdict)> {
        if i >= self.len {
            return None;
        }
        Some((&self.frames[i], self.verdicts[i]))
    }

    /// Iterates over frames with their verdicts, received ones first.
    pub fn iter(&self) -> impl Iterator<Item = (&Frame, Verdict)> {
        self.frames[..self.len]
            .iter()
            .zip(self.verdicts[..self.len].iter().copied())
    }

    /// Mutable frame `i` (received or generated).
    #[inline]
    pub(crate) fn frame_mut(&mut self, i: usize) -> &mut Frame {
        &mut self.frames[i]
    }

    /// Frame `i` mutable and a later frame `j` shared, at once (`None` unless `i < j < len`).
    #[inline]
    pub(crate) fn pair_mut(&mut self, i: usize, j: usize) -> Option<(&mut Frame, &Frame)> {
        if i >= j || j >= self.len {
            return None;
        }
        let (head, tail) = self.frames.split_at_mut(j);
        Some((head.get_mut(i)?, tail.first()?))
    }

    /// Sets the verdict of frame `i`.
    #[inline]
    pub(crate) fn set_verdict(&mut self, i: usize, verdict: Verdict) {
        self.verdicts[i] = verdict;
    }

    /// Claims a generated slot; returns its index.
    #[inline]
    pub(crate) fn alloc_generated(&mut self) -> Option<usize> {
        if self.len >= self.frames.len() {
            return None;
        }
        let i = self.len;
        self.len += 1;
        self.frames[i].head = HEADROOM;
        self.frames[i].len = 0;
        self.frames[i].in_port = PortId::LOCAL;
        self.frames[i].offload = Offload::default();
        self.frames[i].encap_len = 0;
        self.verdicts[i] = Verdict::Drop(super::DropReason::NotProcessed);
        Some(i)
    }

    /// Gives back the last generated slot (when building it failed).
    #[inline]
    pub(crate) fn release_last_generated(&mut self) {
        if self.len > self.rx {
            self.len -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_room() {
        let mut f = Frame::with_capacity(100);
        assert!(f.fill(&[1, 2, 3]));
        assert!(f.push_front(50));
        assert_eq!(f.len(), 53);
        assert!(f.pull_front(50));
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(!f.push_front(HEADROOM + 1));
        assert!(!f.pull_front(4));
        assert!(f.set_len(100));
        assert!(!f.set_len(101));
        assert!(!f.fill(&[0u8; 101]));
        assert!(f.is_empty());
    }

    #[test]
    fn vlan_tag_removal_moves_the_macs_and_the_offsets() {
        let macs: Vec<u8> = (1..=12).collect();
        let mut bytes = macs.clone();
        bytes.extend_from_slice(&[0x81, 0x00, 0x00, 0x00, 0x08, 0x00, 0x45]);
        let mut f = Frame::with_capacity(100);
        assert!(f.fill(&bytes));
        f.offload.csum = Some((38, 16));
        f.offload.hdr_len = 58;
        assert!(f.remove_vlan_tag());
        assert_eq!(&f.data()[..12], &macs[..]);
        assert_eq!(&f.data()[12..], &[0x08, 0x00, 0x45]);
        assert_eq!((f.offload.csum, f.offload.hdr_len), (Some((34, 16)), 54));
        // Shorter than a tagged header: left alone.
        assert!(!f.remove_vlan_tag());
        assert_eq!(f.len(), 15);
    }

    #[test]
    fn batch_slots() {
        let mut b = Batch::with_size(2, 64);
        assert!(b.push_rx(PortId(0), 1, &[0; 60]));
        assert!(b.push_rx(PortId(1), 2, &[0; 60]));
        assert!(!b.push_rx(PortId(1), 3, &[0; 60]));
        assert_eq!(b.rx_len(), 2);
        let g = b.alloc_generated().unwrap();
        assert_eq!(g, 2);
        assert!(b.alloc_generated().is_some());
        assert!(b.alloc_generated().is_none());
        assert_eq!(b.len(), 4);
        b.clear();
        assert!(b.is_empty());
    }
}
