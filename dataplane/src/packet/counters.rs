//! Per-worker counters: rx/tx per port, drops per reason, notable events.
//!
//! Each worker owns one [`WorkerCounters`] and is its only writer, so an
//! increment is a relaxed load and store (no locked instruction); readers
//! (metrics, `replay` summaries) sum the workers' values.

use core::sync::atomic::{AtomicU64, Ordering};

use super::PortId;

/// A counter with a single writer and any number of readers.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// Number of values.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name used in metrics and summaries.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Why the pipeline dropped a frame.
    DropReason {
        /// Placeholder verdict of a slot no stage looked at (a bug if seen).
        NotProcessed => "not_processed",
        /// The frame arrived on a port the snapshot does not know.
        UnknownPort => "unknown_port",
        /// Shorter than an Ethernet header, or a VLAN tag cut short.
        EthernetMalformed => "ethernet_malformed",
        /// 802.1Q/802.1ad tagged frame on an access port (a priority tag,
        /// VLAN ID 0, is removed instead, as Linux does).
        VlanTagged => "vlan_tagged",
        /// Source MAC is multicast or zero.
        InvalidSrcMac => "invalid_src_mac",
        /// Source MAC is one of the switch's own.
        SrcMacIsOurs => "src_mac_is_ours",
        /// Source MAC is not the one assigned to the pod port (anti-spoofing).
        SpoofedSrcMac => "spoofed_src_mac",
        /// Source IPv4 (or ARP sender IP) is not one assigned to the pod port.
        SpoofedSrcIp => "spoofed_src_ip",
        /// IPv6 from a pod port with an assigned MAC whose source is not
        /// the pod's link-local address (the EUI-64 of its MAC), nor `::`
        /// where a host without an address sends it (duplicate address
        /// detection of its own address, router solicitation, multicast
        /// listener report); or a Neighbor Advertisement of another address.
        SpoofedSrcIpv6 => "spoofed_src_ipv6",
        /// IPv6 from a pod whose header or extension headers are invalid or
        /// cut short, a first fragment without the whole ICMPv6 header, or
        /// Neighbor Discovery with a bad option: the RA guard cannot tell
        /// what it carries.
        Ipv6Malformed => "ipv6_malformed",
        /// A Router Advertisement from a pod (RA guard, RFC 6105).
        RaGuardRouterAdvert => "ra_guard_router_advert",
        /// An ICMPv6 Redirect from a pod.
        RaGuardRedirect => "ra_guard_redirect",
        /// Another ICMPv6 message only routers send, from a pod: multicast
        /// listener query, router renumbering, multicast router
        /// advertisement or termination.
        RaGuardRouterOnly => "ra_guard_router_only",
        /// Destination was learned on the input port (no hair-pinning).
        SamePort => "same_port",
        /// Unicast frame on the uplink not addressed to the uplink's MAC.
        NotForUs => "not_for_us",
        /// A packet on a shared uplink that belongs to the node's own
        /// network stack (its address's other traffic, ARP requests for
        /// it, other destinations): the kernel, which sees the same frame,
        /// handles it.
        HostOwned => "host_owned",
        /// ARP that is not Ethernet/IPv4, or truncated.
        ArpMalformed => "arp_malformed",
        /// ARP addressed to the switch that needs no action (e.g. unsolicited reply).
        ArpIgnored => "arp_ignored",
        /// IPv4 header invalid or truncated.
        Ipv4Malformed => "ipv4_malformed",
        /// IPv4 header checksum wrong.
        Ipv4BadChecksum => "ipv4_bad_checksum",
        /// IPv4 with a multicast, broadcast or reserved source or destination sent to the router.
        Ipv4BadAddress => "ipv4_bad_address",
        /// Non-IPv4 packet sent to the router's MAC (IPv6 routing is not implemented).
        L3ProtocolUnsupported => "l3_protocol_unsupported",
        /// ICMP to the switch that is truncated or fails its checksum.
        IcmpMalformed => "icmp_malformed",
        /// Packet to the switch's own address that it does not answer.
        LocalUnsupported => "local_unsupported",
        /// A fragment held for reassembly whose datagram's other fragments
        /// did not all come within 30 s.
        FragmentTimeout => "fragment_timeout",
        /// A fragment overlapping another of its datagram, or not fitting
        /// it (past 65,535 bytes or the datagram's end, not a multiple of 8
        /// bytes before the end): the datagram is dropped, as Linux does
        /// (an exact repeat: only itself).
        FragmentOverlap => "fragment_overlap",
        /// A fragment held for reassembly whose datagram gave way to a newer
        /// one (32 datagrams of up to 64 KiB are reassembled at once per
        /// worker), or a datagram larger than a frame buffer.
        FragmentMemory => "fragment_memory",
        /// No route to the destination (an ICMP net unreachable is sent when allowed).
        NoRoute => "no_route",
        /// TTL ran out (an ICMP time exceeded is sent when allowed).
        TtlExpired => "ttl_expired",
        /// An ICMP error was due but the rate limit refused it.
        IcmpRateLimited => "icmp_rate_limited",
        /// Next hop unresolved and its hold queue full.
        NeighbourHoldFull => "neighbour_hold_full",
        /// Next hop did not answer ARP; the held packets are dropped.
        NeighbourUnresolved => "neighbour_unresolved",
        /// No free slot in the batch for a generated frame.
        BatchFull => "batch_full",
        /// An IPv4 packet with DF (or a GSO super-frame whose segments)
        /// longer than the MTU of the port it would leave by: ICMP
        /// fragmentation needed with that MTU goes back to its sender (when
        /// the rate limit allows). One without DF is sent in fragments.
        FragNeeded => "frag_needed",
        /// A frame longer than the MTU of the port it was to leave by that
        /// could neither be fragmented nor refused with ICMP (a flooded
        /// copy with DF, a frame that is not IPv4): not sent.
        MtuExceeded => "mtu_exceeded",
        /// The kernel refused a frame as longer than the device takes
        /// (`EMSGSIZE`: the device's MTU is below the port's `mtu`).
        TxTooBig => "tx_too_big",
        /// The output device refused the frame (queue full, device gone).
        TxError => "tx_error",
        /// A GSO super-frame or partial checksum could not be completed in
        /// software, or a packet longer than the port's MTU could not be fragmented.
        TxOffloadError => "tx_offload_error",
        /// The input device gave a frame with an unusable vnet header.
        RxVnetHeader => "rx_vnet_header",
        // --- services / NAT (issue 6) ---
        /// New connection to a service without a ready endpoint (answered with a TCP RST or ICMP port unreachable).
        ServiceNoEndpoints => "service_no_endpoints",
        /// No free port for masquerade or hairpin SNAT.
        NatPortExhausted => "nat_port_exhausted",
        /// TCP segment invalid or out of window for its tracked connection (not NATed, like Linux's INVALID).
        ConntrackInvalid => "conntrack_invalid",
        /// The connection could not be tracked: the table is full of
        /// connections it may not evict (assured ones, not closing).
        ConntrackFull => "conntrack_full",
        /// The connection could not be tracked: its pod already has
        /// `conntrack.max_per_pod` tracked connections.
        ConntrackPodLimit => "conntrack_pod_limit",
        /// TCP segment of a connection whose endpoint left the service (a RST is sent to the client).
        ServiceEndpointRemoved => "service_endpoint_removed",
        /// A TCP, UDP or ICMP header cut short (or a TCP data offset out of
        /// bounds), or an ICMP error whose quoted header cannot be read, where
        /// the NAT stage looks: Linux's conntrack INVALID, which kube-proxy drops.
        L4Malformed => "l4_malformed",
        // --- end services / NAT ---
        // VXLAN overlay (overlay/).
        /// A VXLAN packet to us that is truncated or inconsistent (no I flag, bad lengths).
        VxlanMalformed => "vxlan_malformed",
        /// A VXLAN GSO super-frame (a kernel peer's tunnel GSO) whose outer
        /// or inner headers do not parse or whose lengths disagree with the frame.
        VxlanGsoMalformed => "vxlan_gso_malformed",
        /// A VXLAN GSO super-frame asking for what is not supported: a GSO
        /// kind other than its inner packet's, BIG TCP, IPv6 extension
        /// headers, more than 2,048 segments.
        VxlanGsoUnsupported => "vxlan_gso_unsupported",
        /// A VXLAN GSO super-frame whose partial checksum is missing or is
        /// not its inner L4 header's.
        VxlanGsoChecksum => "vxlan_gso_checksum",
        /// A VXLAN packet whose non-zero outer UDP checksum is wrong.
        VxlanBadChecksum => "vxlan_bad_checksum",
        /// An outer IPv4 fragment of a VXLAN packet to us. Not counted:
        /// decapsulation says so and the pipeline reassembles the outer
        /// packet, then decapsulates it (before, the fragment was dropped).
        VxlanFragmented => "vxlan_fragmented",
        /// A VXLAN packet with a VNI other than ours.
        VxlanWrongVni => "vxlan_wrong_vni",
        /// A VXLAN packet from an address that is no known node.
        VxlanUnknownNode => "vxlan_unknown_node",
        /// A decapsulated frame not addressed to our VTEP MAC, or not IPv4.
        VxlanInnerNotForUs => "vxlan_inner_not_for_us",
        /// A decapsulated packet that would leave by the uplink or a tunnel again.
        VxlanSplitHorizon => "vxlan_split_horizon",
        /// A packet with DF too large for the tunnel (ICMP fragmentation
        /// needed is sent; one without DF goes in fragments).
        VxlanTooBig => "vxlan_too_big",
        /// A packet could not be encapsulated (no headroom, too long, bad GSO frame).
        VxlanEncapFailed => "vxlan_encap_failed",
    }
}

named_enum! {
    /// Things the pipeline did that are not drops.
    Event {
        /// A new MAC was learned.
        MacLearned => "mac_learned",
        /// A known MAC appeared on another port.
        MacMoved => "mac_moved",
        /// A MAC aged out.
        MacAged => "mac_aged",
        /// Unknown unicast was flooded.
        UnknownUnicastFlooded => "unknown_unicast_flooded",
        /// Broadcast or multicast was flooded.
        MulticastFlooded => "multicast_flooded",
        /// The switch answered an ARP request for one of its addresses.
        ArpReplySent => "arp_reply_sent",
        /// The switch sent an ARP request for a next hop.
        ArpRequestSent => "arp_request_sent",
        /// A neighbour (IP → MAC) was learned or changed.
        NeighbourLearned => "neighbour_learned",
        /// The switch answered an ICMP echo request.
        IcmpEchoReplySent => "icmp_echo_reply_sent",
        /// The switch sent an ICMP error (time exceeded, unreachable).
        IcmpErrorSent => "icmp_error_sent",
        /// A packet was routed.
        Routed => "routed",
        /// A routed packet of a tracked flow took the flow cache's fast path.
        FlowCacheHit => "flow_cache_hit",
        /// A packet was held while its next hop was resolved.
        Held => "held",
        /// A held packet was sent after resolution.
        HeldReleased => "held_released",
        /// A GSO super-frame was received and switched or routed as one unit.
        GsoFrames => "gso_frames",
        /// A GSO super-frame was cut into segments in software for a port without offloads.
        GsoSegmented => "gso_segmented",
        /// A partial checksum was completed in software for a port without offloads.
        ChecksumCompleted => "checksum_completed",
        /// An IPv4 packet without DF longer than its output port's (or
        /// tunnel's) MTU was sent in fragments.
        Ipv4Fragmented => "ipv4_fragmented",
        /// An IPv4 datagram that arrived in fragments was reassembled.
        Ipv4Reassembled => "ipv4_reassembled",
        // --- services / NAT (issue 6) ---
        /// A new connection to a ClusterIP or NodePort was DNATed to an endpoint.
        Dnat => "dnat",
        /// A new connection was masqueraded to the uplink address.
        SnatMasquerade => "snat_masquerade",
        /// A pod reached a service that landed on itself: SNAT to the gateway.
        SnatHairpin => "snat_hairpin",
        /// A reply packet was translated back.
        ReverseNat => "reverse_nat",
        /// An ICMP error about a tracked flow was translated (outer and quoted headers).
        IcmpErrorUnnat => "icmp_error_unnat",
        /// A flow pinned to an endpoint that left its service was re-resolved or closed.
        FlowReresolved => "flow_reresolved",
        /// An unassured conntrack entry was evicted to make room.
        ConntrackEvicted => "conntrack_evicted",
        /// An assured TCP connection already closing (FIN or RST seen) was
        /// evicted to make room; established ones never are.
        ConntrackEvictedClosing => "conntrack_evicted_closing",
        /// A connection to a service without endpoints was refused (RST or ICMP sent).
        ServiceRejected => "service_rejected",
        /// A new connection's reply tuple was another connection's (the same
        /// client port to two services on one endpoint): its source port was
        /// remapped, as Linux does.
        SourcePortRemapped => "source_port_remapped",
        // --- end services / NAT ---
        // mirror (issue 8):
        /// A mirror copy was dropped because its output was behind (the frame itself was not).
        MirrorDropped => "mirror_dropped",
        // VXLAN overlay (overlay/).
        /// A packet was encapsulated toward another node.
        VxlanEncapsulated => "vxlan_encapsulated",
        /// An encapsulated GSO super-frame was cut into segments in
        /// software at transmit (no tunnel GSO on the uplink).
        VxlanGsoSegmented => "vxlan_gso_segmented",
        /// An encapsulated GSO super-frame left the uplink whole (UDP-tunnel
        /// GSO through the transmit TAP); the kernel segments it if it must.
        VxlanGsoSentWhole => "vxlan_gso_sent_whole",
        /// A VXLAN packet was decapsulated.
        VxlanDecapsulated => "vxlan_decapsulated",
        /// A VXLAN GSO super-frame (a kernel peer's tunnel GSO) was
        /// decapsulated; its inner frame went on as one GSO frame.
        VxlanGsoDecapsulated => "vxlan_gso_decapsulated",
        /// An ICMP fragmentation needed was sent for a packet too large for the tunnel.
        VxlanFragNeededSent => "vxlan_frag_needed_sent",
        /// A decapsulated TCP segment was merged into the previous one of its flow (receive coalescing).
        VxlanRxCoalesced => "vxlan_rx_coalesced",
    }
}

/// Packet and byte counts of one port.
#[derive(Default, Debug)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames the input device failed to deliver: receive errors, and
    /// frames it gave that were unusable (bad vnet header, cut short, too long).
    pub rx_errors: Counter,
    /// Frames the kernel dropped before the worker read them (the
    /// AF_PACKET ring or socket buffer was full).
    pub rx_dropped: Counter,
}

/// All counters of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    ports: Box<[PortCounters]>,
    drops: [Counter; DropReason::COUNT],
    events: [Counter; Event::COUNT],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            ports: (0..PortId::MAX_PORTS)
                .map(|_| PortCounters::default())
                .collect(),
            drops: core::array::from_fn(|_| Counter::default()),
            events: core::array::from_fn(|_| Counter::default()),
        }
    }
}

impl WorkerCounters {
    /// The counters of `port`, or `None` for [`PortId::LOCAL`] and ids out of range.
    #[inline]
    pub fn port(&self, port: PortId) -> Option<&PortCounters> {
        self.ports.get(usize::from(port.0))
    }

    /// Counts a received frame.
    #[inline]
    pub fn rx(&self, port: PortId, bytes: usize) {
        if let Some(c) = self.port(port) {
            c.rx_packets.inc();
            c.rx_bytes.add(bytes as u64);
        }
    }

    /// Counts a sent frame (called by the I/O layer once the frame is out).
    #[inline]
    pub fn tx(&self, port: PortId, bytes: usize) {
        if let Some(c) = self.port(port) {
            c.tx_packets.inc();
            c.tx_bytes.add(bytes as u64);
        }
    }

    /// Counts a drop.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    /// Counts `n` drops for `reason` (frames held earlier, dropped together).
    #[inline]
    pub fn add_drops(&self, reason: DropReason, n: u32) {
        self.drops[reason as usize].add(u64::from(n));
    }

    /// Counts an event.
    #[inline]
    pub fn event(&self, event: Event) {
        self.events[event as usize].inc();
    }

    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Occurrences of `event`.
    pub fn events(&self, event: Event) -> u64 {
        self.events[event as usize].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.extend(Event::ALL.iter().map(|e| e.as_str()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(names.iter().all(|s| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
    }

    #[test]
    fn counting() {
        let c = WorkerCounters::default();
        c.rx(PortId(3), 60);
        c.rx(PortId(3), 40);
        c.tx(PortId::LOCAL, 99);
        c.count_drop(DropReason::NoRoute);
        c.event(Event::Routed);
        let p = c.port(PortId(3)).unwrap();
        assert_eq!((p.rx_packets.get(), p.rx_bytes.get()), (2, 100));
        assert_eq!(c.drops(DropReason::NoRoute), 1);
        assert_eq!(c.events(Event::Routed), 1);
    }
}
