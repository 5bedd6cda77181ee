//! Fitting a frame to the MTU of the port it leaves by, at transmit: the
//! last step before a device, after which nothing longer than the MTU is
//! ever sent.
//!
//! A frame is too long when its length, or for a GSO super-frame the
//! length of its longest segment, is more than the Ethernet header plus the
//! MTU ([`exceeds`]). Such a frame is cut as Linux's `ip_finish_output`
//! cuts it: a super-frame into its segments ([`super::gso`]), an IPv4
//! packet (or segment) without DF into fragments ([`super::fragment`]).
//! What cannot be cut that way (DF set, not IPv4) is refused and counted
//! by the caller: the pipeline has already sent ICMP fragmentation needed
//! for the packets with DF it could answer (`pipeline/mtu.rs`), so what
//! reaches here with DF is a flooded copy.
//!
//! Nothing allocates: segments are written into one scratch frame, the
//! fragments of a segment into a second.

use super::fragment::{self, FragmentError};
use super::gso::{self, GsoError, Segmenter};
use crate::packet::{DropReason, Event, Frame, GsoKind, WorkerCounters};
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;

/// What [`cut`] did with a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Wire frames handed to `emit`.
    pub emitted: usize,
    /// Packets sent in fragments.
    pub fragmented: usize,
    /// Packets (the frame, or some of its segments) too long that could not
    /// be fragmented: DF set, or not IPv4. Not emitted.
    pub refused: usize,
}

impl Cut {
    /// Counts in `counters` what was done to `frame`: its segmentation in
    /// software, each packet sent in fragments, each refused one as
    /// `mtu_exceeded`.
    pub fn count(&self, frame: &Frame, counters: &WorkerCounters) {
        if frame.offload.gso != GsoKind::None {
            counters.event(Event::GsoSegmented);
        }
        for _ in 0..self.fragmented {
            counters.event(Event::Ipv4Fragmented);
        }
        let refused = u32::try_from(self.refused).unwrap_or(u32::MAX);
        counters.add_drops(DropReason::MtuExceeded, refused);
    }
}

/// Why a frame could not be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CutError {
    /// Its segments could not be made.
    #[error("cutting a frame to the MTU: segmenting failed")]
    Gso(#[from] GsoError),
    /// A packet could not be fragmented.
    #[error("cutting a frame to the MTU: fragmenting failed")]
    Fragment(#[from] FragmentError),
}

/// True when `frame` is longer on the wire than `mtu` allows (a GSO
/// super-frame: its longest segment; one that cannot be segmented is left
/// to the device).
#[inline]
pub fn exceeds(frame: &Frame, mtu: usize) -> bool {
    frame.len() > ETH_LEN + mtu
        && (frame.offload.gso == GsoKind::None
            || gso::longest_wire_frame(frame.data(), &frame.offload)
                .is_some_and(|len| len > ETH_LEN + mtu))
}

/// Hands `emit` the wire frames `frame` (which [`exceeds`] `mtu`) becomes:
/// its segments, each (or the frame itself) in fragments of at most `mtu`
/// IP bytes when it is longer. A partial checksum is completed first.
/// Segments go through `scratch`, fragments through `scratch2`.
pub fn cut(
    frame: &Frame,
    mtu: usize,
    scratch: &mut Frame,
    scratch2: &mut Frame,
    mut emit: impl FnMut(&Frame),
) -> Result<Cut, CutError> {
    let mut done = Cut::default();
    if !frame.offload.needs_software() {
        fit(frame.data(), mtu, scratch, &mut emit, &mut done)?;
        return Ok(done);
    }
    let mut segmenter = Segmenter::new(frame.data(), &frame.offload)?;
    while segmenter.next_into(scratch)? {
        if scratch.len() > ETH_LEN + mtu {
            fit(scratch.data(), mtu, scratch2, &mut emit, &mut done)?;
        } else {
            emit(scratch);
            done.emitted += 1;
        }
    }
    Ok(done)
}

/// One packet longer than `mtu`: emitted in fragments, or refused.
fn fit(
    packet: &[u8],
    mtu: usize,
    scratch: &mut Frame,
    emit: &mut impl FnMut(&Frame),
    done: &mut Cut,
) -> Result<(), CutError> {
    match fragment::fragment(packet, mtu, scratch, |f| emit(f)) {
        Ok(n) => {
            done.emitted += n;
            done.fragmented += 1;
            Ok(())
        }
        Err(FragmentError::DontFragment | FragmentError::NotIpv4) => {
            done.refused += 1;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
