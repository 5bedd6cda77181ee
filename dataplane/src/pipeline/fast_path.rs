//! The fast path: a received frame of a cached flow, in its plainest form,
//! forwarded in one pass.
//!
//! The prefetch pass found the frame's flow in the flow cache
//! (`flow_cache.rs`). If the frame is what the full path would route
//! without a second look — untagged IPv4 to the router's MAC, a header
//! without options whose checksum holds, TTL above 1, TCP or UDP that is
//! not a SYN nor a fragment, from a port whose source checks it passes —
//! this module does in one function what the full path does through the
//! L2, router, L3 and flow-cache stages: learn the source MAC, track and
//! translate under the conntrack entry's lock, set the MACs. Anything
//! else, and any check that fails, returns `None` before a change is made
//! (learning the source MAC again is a no-op), and the frame takes the
//! full path, which decides as it always did. What depends on the flow's
//! key alone (its addresses are not martian) is not checked again: the
//! full path checked it before it cached the flow. A test holds the two
//! paths equal on frames of cached flows and on their mutations.

use super::{Pipeline, antispoof};
use crate::conntrack::{ConnKey, TcpSegment};
use crate::packet::Step;
use crate::packet::{Batch, PortId, Verdict};
use crate::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, L2Header, MacAddr, ethernet, ipv4,
};

impl Pipeline {
    /// Forwards frame `i` of `batch` (its receive already counted; its
    /// flow found in the cache at `slot` by the prefetch pass) if it is a
    /// plain frame; `None`: nothing changed, take the full path.
    #[inline]
    pub(super) fn fast_forward(
        &mut self,
        batch: &mut Batch,
        i: usize,
        slot: u32,
        now: u64,
    ) -> Option<Verdict> {
        let frame = batch.frame_mut(i);
        let in_port = frame.in_port;
        let (is_uplink, src_mac) = self.plain_ethernet(frame.data(), in_port)?;
        // As the full path: learned before the L3 checks; the epoch below
        // sees the change if it moved a MAC.
        if !is_uplink {
            let (shared, counters) = (&self.shared.macs, &self.counters);
            self.macs.learn(shared, counters, src_mac, in_port, now);
        }
        let l3 = ethernet::HEADER_LEN;
        let ip = batch.frame_mut(i).data().get(l3..)?;
        let (key, segment) = plain_flow(ip)?;
        // VXLAN comes by UDP to the node's address: the full path decapsulates it.
        if let Some(overlay) = &self.snapshot.overlay
            && key.protocol == IpProtocol::UDP
            && key.dst_addr == overlay.node_ip
        {
            return None;
        }
        let at = (i, l3);
        let verdict = match self.forward_cached(batch, at, (&key, segment.as_ref()), slot, now) {
            Step::Break(verdict) => verdict,
            Step::Continue(_) => return None,
        };
        #[cfg(test)]
        if let Verdict::Forward(_) = verdict {
            self.fast_forwarded += 1;
        }
        Some(verdict)
    }

    /// The L2 checks of the full path for an untagged IPv4 frame `data` to
    /// the router from `in_port`: to the uplink's MAC from the uplink, to
    /// the gateway's from a pod (from a unicast MAC not ours), passing the
    /// port's source checks. `Some`: (from the uplink, source MAC).
    #[inline(always)]
    fn plain_ethernet(&self, data: &[u8], in_port: PortId) -> Option<(bool, MacAddr)> {
        let snapshot = &*self.snapshot;
        let port = snapshot.port(in_port)?;
        let eth = EthernetFrame::new_unchecked(data.first_chunk::<{ ethernet::HEADER_LEN }>()?);
        if eth.ethertype() != EtherType::IPV4 {
            return None;
        }
        let (dst_mac, src_mac) = (eth.dst_addr().to_u64(), eth.src_addr().to_u64());
        if port.is_uplink {
            let (_, uplink) = snapshot.uplink?;
            if dst_mac != uplink.mac.to_u64() {
                return None;
            }
        } else {
            let gateway = snapshot.gateway.mac.to_u64();
            // Unicast (the group bit clear), not all zeros, not ours.
            let unicast = src_mac & (1 << 40) == 0 && src_mac != 0;
            if dst_mac != gateway || !unicast || src_mac == gateway {
                return None;
            }
        }
        let src_mac = MacAddr::from_u64(src_mac);
        if port.enforces_source() {
            let l2 = L2Header {
                dst: MacAddr::from_u64(dst_mac),
                src: src_mac,
                ethertype: EtherType::IPV4,
                vlan: None,
                vlan_tags: 0,
                l3_offset: ethernet::HEADER_LEN,
            };
            antispoof::check(port, &l2, data).ok()?;
        }
        Some((port.is_uplink, src_mac))
    }

    /// Frames the fast path forwarded so far.
    #[cfg(test)]
    pub(crate) fn fast_forwarded(&self) -> u64 {
        self.fast_forwarded
    }
}

/// The flow of a plain routed packet `ip` (from its IPv4 header on): the
/// header is 20 bytes (no options) and checks (RFC 1812 §5.2.2: version,
/// lengths, checksum), the TTL is above 1, it is not a
/// fragment, and it is TCP (not a SYN) or UDP. `None` for anything else:
/// the full path decides.
#[inline]
fn plain_flow(ip: &[u8]) -> Option<(ConnKey, Option<TcpSegment>)> {
    let header = ip.first_chunk::<{ ipv4::HEADER_LEN }>()?;
    let view = Ipv4Packet::new_unchecked(&header[..]);
    let total = usize::from(view.total_len());
    let plain = view.version() == 4 && view.header_len() == ipv4::HEADER_LEN;
    if !plain || total < ipv4::HEADER_LEN || view.is_fragment() || view.ttl() <= 1 {
        return None;
    }
    let l4 = ip.get(ipv4::HEADER_LEN..total)?;
    if !ipv4::plain_header_checksum_ok(header) {
        return None;
    }
    // No martian check: the key holds the addresses, and the full path
    // drops a martian before it could cache its flow, so such a packet
    // misses the cache.
    let addrs = (view.src_addr(), view.dst_addr());
    crate::nat::l4_flow(view.protocol(), addrs, l4)
}
