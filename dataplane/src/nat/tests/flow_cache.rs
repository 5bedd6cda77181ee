//! The pipeline's established-flow cache: routed packets of tracked flows
//! take it, and it never changes what comes out — checked against the
//! same node with the cache off, packet by packet.

use super::*;

#[test]
fn established_packets_take_the_cache_and_are_translated() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    assert_eq!(n.events(Event::FlowCacheHit), 0, "the handshake fills it");
    let mut seq = 101;
    for i in 0..5u8 {
        let data = [b'a' + i; 7];
        let out = n.through(A, to_web(CLIENT, seq, Flags::Ack(501), &data), B);
        assert_eq!((out.src, out.dst), (CLIENT, (IP_B, 8080)));
        assert_eq!((out.src_mac, out.dst_mac, out.ttl), (GW_MAC, MAC_B, 63));
        assert_eq!(out.payload, data);
        seq += 7;
    }
    assert_eq!(n.events(Event::FlowCacheHit), 5);
    let seq_after = seq;
    // The routed reply direction is cached too, with the reverse rewrite.
    let reply = |seq| {
        tcp(
            (MAC_B, GW_MAC),
            (IP_B, 8080),
            CLIENT,
            seq,
            Flags::Ack(seq_after),
            b"ok",
        )
    };
    n.through(B, reply(501), A);
    let back = n.through(B, reply(503), A);
    assert_eq!((back.src, back.dst, back.ttl), ((WEB, 80), CLIENT, 63));
    assert_eq!(n.events(Event::FlowCacheHit), 6);
    assert_eq!(n.first_tcp_state(), Some(TcpState::Established));
}

#[test]
fn a_cached_flow_still_runs_the_tcp_state_machine() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    far_segment_is_dropped(&mut n);
    assert_eq!(n.events(Event::FlowCacheHit), 0, "a drop is no hit");
    n.through(A, to_web(CLIENT, 101, Flags::Rst, b""), B);
    assert_eq!(n.first_tcp_state(), Some(TcpState::Close));
}

#[test]
fn a_flushed_flow_is_not_translated_from_the_cache() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    let hits = n.events(Event::FlowCacheHit);
    let removed =
        n.p.shared_tables()
            .conntrack
            .flush(&ConntrackFilter::default());
    assert_eq!(removed, 1);
    // The next segment is picked up mid-stream as a new connection (as
    // Linux does), not translated from the cache.
    n.through(A, to_web(CLIENT, 102, Flags::Ack(501), b"y"), B);
    assert_eq!(n.events(Event::Dnat), 2);
    assert_eq!(n.events(Event::FlowCacheHit), hits);
}

#[test]
fn a_moved_endpoint_mac_moves_the_cached_output() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    // pod-b's MAC shows up on pod-c's port (a re-attached pod).
    n.send(C, arp(MAC_B, IP_B, GW));
    let out = n.through(A, to_web(CLIENT, 102, Flags::Ack(501), b"y"), C);
    assert_eq!(out.dst_mac, MAC_B);
}

#[test]
fn a_mac_moved_earlier_in_the_same_batch_moves_the_cached_output() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    let mut batch = Batch::with_size(4, 2048);
    n.now += 1_000_000;
    batch.push_rx(C, n.now, &arp(MAC_B, IP_B, GW));
    batch.push_rx(A, n.now, &to_web(CLIENT, 102, Flags::Ack(501), b"y"));
    n.p.process(&mut batch, n.now);
    let verdicts: Vec<Verdict> = batch.iter().map(|(_, v)| v).collect();
    assert_eq!(verdicts[1], Verdict::Forward(C), "{verdicts:?}");
}

#[test]
fn a_removed_endpoint_is_not_reached_through_the_cache() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    n.reconfigure(config(r#"{ address = "10.244.1.4" }"#), 2);
    // The flow's endpoint left: the client gets a RST, as without a cache.
    let out = n.send(A, to_web(CLIENT, 102, Flags::Ack(501), b"y"));
    assert_eq!(out[0].1, Verdict::Forward(A));
    assert_eq!(facts(&out[0].0).tcp.map(|t| t.4), Some(true), "RST");
    assert_eq!(n.events(Event::FlowReresolved), 1);
}

#[test]
fn a_stale_neighbour_is_probed_again() {
    let mut cfg = config(WEB_ON_B);
    cfg.neighbours.reachable_secs = 1;
    let mut n = Node::with(cfg, SharedTables::new(4096, Timeouts::default()));
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    n.now += 2 * SEC;
    let probes = n.events(Event::ArpRequestSent);
    let out = n.send(A, to_web(CLIENT, 102, Flags::Ack(501), b"y"));
    assert_eq!(out[0].1, Verdict::Forward(B));
    assert_eq!(
        n.events(Event::ArpRequestSent),
        probes + 1,
        "ARP probe sent"
    );
}

mod differential {
    use super::*;
    use proptest::prelude::*;

    /// One step of a script run against both nodes.
    #[derive(Clone, Debug)]
    enum Op {
        /// Client `c` opens its connection to web (SYN, SYN-ACK at L2, ACK).
        Handshake(usize),
        /// Client `c` → web: flags, sequence offset (0: in order), payload length.
        Client(usize, u8, u32, usize),
        /// Web's endpoint → client `c`, routed or at L2.
        Server(usize, u8, u32, bool),
        /// Client `c` → the DNS ClusterIP, and the answer.
        Dns(usize, bool),
        /// Masqueraded TCP to a remote host, and the remote's answer.
        Remote(u8, bool),
        /// web's endpoints become set `i`.
        Endpoints(usize),
        /// `conntrack -F`.
        Flush,
        /// Time passes.
        Wait(u64),
        /// pod-b's MAC moves to pod-c's port or back.
        MoveB(bool),
        /// Client `c`'s next segment, spoiled by [`mangle`] way `k`.
        Mangled(usize, usize),
    }

    const ENDPOINT_SETS: [&str; 4] = [
        WEB_ON_B,
        r#"{ address = "10.244.1.4" }"#,
        r#"{ address = "10.244.1.3" }, { address = "10.244.1.4" }"#,
        "",
    ];

    fn op() -> impl Strategy<Value = Op> {
        let offset = prop_oneof![4 => Just(0u32), 1 => Just(1u32), 1 => Just(0x4000_0000u32)];
        // Mostly plain ACKs (the segments a cached flow carries).
        let flag = prop_oneof![4 => Just(4u8), 1 => 0u8..4];
        prop_oneof![
            2 => (0usize..3).prop_map(Op::Handshake),
            6 => (0usize..3, flag.clone(), offset.clone(), 0usize..4)
                .prop_map(|(c, f, o, l)| Op::Client(c, f, o, l)),
            4 => (0usize..3, flag.clone(), offset, any::<bool>())
                .prop_map(|(c, f, o, r)| Op::Server(c, f, o, r)),
            2 => (0usize..3, any::<bool>()).prop_map(|(c, a)| Op::Dns(c, a)),
            2 => (flag, any::<bool>()).prop_map(|(f, back)| Op::Remote(f, back)),
            1 => (0usize..ENDPOINT_SETS.len()).prop_map(Op::Endpoints),
            1 => Just(Op::Flush),
            1 => prop_oneof![Just(1u64), Just(40), Just(700)].prop_map(Op::Wait),
            1 => any::<bool>().prop_map(Op::MoveB),
            3 => (0usize..3, 0..MANGLES).prop_map(|(c, k)| Op::Mangled(c, k)),
        ]
    }

    fn flags(f: u8, ack: u32) -> Flags {
        match f {
            0 => Flags::Syn,
            1 => Flags::SynAck(ack),
            2 => Flags::Fin(ack),
            3 => Flags::Rst,
            _ => Flags::Ack(ack),
        }
    }

    /// Sequence numbers of both sides of each client's connection.
    struct Script {
        client_seq: [u32; 3],
        server_seq: [u32; 3],
        generation: u64,
    }

    impl Script {
        /// The frames (with input ports) an op sends, or a change to make.
        fn frames(&mut self, op: &Op) -> Vec<(PortId, Vec<u8>)> {
            match *op {
                Op::Handshake(c) => {
                    let client = (IP_A, 40000 + c as u16);
                    self.client_seq[c] = 1000 * (c as u32 + 1);
                    self.server_seq[c] = 5000 * (c as u32 + 1);
                    let (cs, ss) = (self.client_seq[c], self.server_seq[c]);
                    self.client_seq[c] += 1;
                    self.server_seq[c] += 1;
                    vec![
                        (A, to_web(client, cs, Flags::Syn, b"")),
                        (B, web_reply(client, ss, Flags::SynAck(cs + 1), b"")),
                        (A, to_web(client, cs + 1, Flags::Ack(ss + 1), b"")),
                    ]
                }
                Op::Client(c, f, offset, len) => {
                    let client = (IP_A, 40000 + c as u16);
                    let seq = self.client_seq[c].wrapping_add(offset);
                    let data = vec![b'c'; len];
                    let frame = to_web(client, seq, flags(f, self.server_seq[c]), &data);
                    self.client_seq[c] = self.client_seq[c].wrapping_add(len as u32);
                    if f == 0 {
                        self.client_seq[c] = self.client_seq[c].wrapping_add(1);
                    }
                    vec![(A, frame)]
                }
                Op::Server(c, f, offset, routed) => {
                    let client = (IP_A, 40000 + c as u16);
                    let seq = self.server_seq[c].wrapping_add(offset);
                    let macs = if routed {
                        (MAC_B, GW_MAC)
                    } else {
                        (MAC_B, MAC_A)
                    };
                    let ack = flags(f, self.client_seq[c]);
                    let frame = tcp(macs, (IP_B, 8080), client, seq, ack, b"s");
                    self.server_seq[c] = self.server_seq[c].wrapping_add(1);
                    vec![(B, frame)]
                }
                Op::Dns(c, answer) => {
                    let client = (IP_A, 5000 + c as u16);
                    let frame = if answer {
                        udp((MAC_B, GW_MAC), (IP_B, 5353), client, b"answer")
                    } else {
                        udp((MAC_A, GW_MAC), client, (DNS, 53), b"query")
                    };
                    vec![(if answer { B } else { A }, frame)]
                }
                Op::Remote(f, back) => {
                    let frame = if back {
                        let node = (NODE, 1024);
                        tcp(
                            (ROUTER, UP_MAC),
                            (REMOTE, 443),
                            node,
                            900,
                            flags(f, 11),
                            b"",
                        )
                    } else {
                        tcp(
                            (MAC_A, GW_MAC),
                            (IP_A, 41000),
                            (REMOTE, 443),
                            10,
                            flags(f, 901),
                            b"",
                        )
                    };
                    vec![(if back { UP } else { A }, frame)]
                }
                Op::MoveB(to_c) => vec![(if to_c { C } else { B }, arp(MAC_B, IP_B, GW))],
                Op::Mangled(c, k) => {
                    let client = (IP_A, 40000 + c as u16);
                    let seq = self.client_seq[c];
                    let frame = to_web(client, seq, Flags::Ack(self.server_seq[c]), b"m");
                    vec![mangle(frame, k)]
                }
                Op::Endpoints(_) | Op::Flush | Op::Wait(_) => Vec::new(),
            }
        }
    }

    /// Makes a change to `n`; `config` gives its configuration for a set of endpoints.
    fn apply(n: &mut Node, op: &Op, generation: u64, config: &dyn Fn(&str) -> NodeConfig) {
        match *op {
            Op::Endpoints(i) => n.reconfigure(config(ENDPOINT_SETS[i]), generation),
            Op::Flush => {
                n.p.shared_tables()
                    .conntrack
                    .flush(&ConntrackFilter::default());
            }
            Op::Wait(secs) => n.now += secs * SEC,
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever happens, the node with a flow cache sends exactly
        /// what the node without one sends, and tracks the same state.
        #[test]
        fn the_cache_changes_nothing_but_speed(
            ops in proptest::collection::vec(op(), 1..60),
            source_checks in any::<bool>(),
        ) {
            // The same node, with and without a flow cache, through every reconfiguration.
            let with_cache = |endpoints: &str| {
                if source_checks { checked_config(endpoints) } else { config(endpoints) }
            };
            let without_cache = |endpoints: &str| {
                let mut cfg = with_cache(endpoints);
                cfg.conntrack.flow_cache_entries = 0;
                cfg
            };
            let node = |cfg| Node::with(cfg, SharedTables::new(4096, Timeouts::default()));
            let (mut cached, mut plain) = (node(with_cache(WEB_ON_B)), node(without_cache(WEB_ON_B)));
            let mut script = Script { client_seq: [100; 3], server_seq: [500; 3], generation: 1 };
            for op in &ops {
                if matches!(op, Op::Endpoints(_)) {
                    script.generation += 1;
                }
                apply(&mut cached, op, script.generation, &with_cache);
                apply(&mut plain, op, script.generation, &without_cache);
                for (port, frame) in script.frames(op) {
                    let a = cached.send(port, frame.clone());
                    let b = plain.send(port, frame);
                    prop_assert_eq!(&a, &b, "after {:?}", op);
                }
            }
            let list = |n: &Node| {
                let mut l = n.p.shared_tables().conntrack.list(&ConntrackFilter::default(), n.now, 100);
                l.sort_by_key(|r| format!("{r:?}"));
                l
            };
            prop_assert_eq!(list(&cached), list(&plain));
            prop_assert_eq!(plain.p.fast_forwarded(), 0);
            for e in Event::ALL.iter().filter(|&&e| e != Event::FlowCacheHit) {
                prop_assert_eq!(cached.events(*e), plain.events(*e), "{:?}", e);
            }
            for d in DropReason::ALL {
                prop_assert_eq!(cached.drops(*d), plain.drops(*d), "{:?}", d);
            }
        }
    }

    #[test]
    fn a_script_of_established_traffic_hits_the_cache() {
        // The differential test means something only if the cache (and
        // its fast path) is used.
        let mut n = Node::new();
        let mut script = Script {
            client_seq: [100; 3],
            server_seq: [500; 3],
            generation: 1,
        };
        let ops = [
            Op::Client(0, 0, 0, 0),
            Op::Server(0, 1, 0, false),
            Op::Client(0, 4, 0, 3),
            Op::Client(0, 4, 0, 3),
            Op::Server(0, 4, 0, true),
            Op::Server(0, 4, 0, true),
        ];
        for op in &ops {
            for (port, frame) in script.frames(op) {
                n.send(port, frame);
            }
        }
        assert_eq!(
            n.events(Event::FlowCacheHit),
            2,
            "second data segment and second routed reply"
        );
        assert_eq!(n.p.fast_forwarded(), 2, "both by the fast path");
    }

    #[test]
    fn every_mangled_segment_leaves_the_fast_path() {
        // A plain segment of a cached flow takes the fast path; none of
        // its mangled versions does, yet each comes out as it would without
        // a cache (the proptest above compares them in random scripts).
        for checked in [false, true] {
            for k in 0..MANGLES {
                let cfg = if checked {
                    checked_config(WEB_ON_B)
                } else {
                    config(WEB_ON_B)
                };
                let mut cfg_plain = cfg.clone();
                cfg_plain.conntrack.flow_cache_entries = 0;
                let mut n = Node::with(cfg, SharedTables::new(4096, Timeouts::default()));
                let mut plain = Node::with(cfg_plain, SharedTables::new(4096, Timeouts::default()));
                let mut script = Script {
                    client_seq: [100; 3],
                    server_seq: [500; 3],
                    generation: 1,
                };
                for op in [
                    Op::Handshake(0),
                    Op::Client(0, 4, 0, 3),
                    Op::Client(0, 4, 0, 3),
                ] {
                    for (port, frame) in script.frames(&op) {
                        assert_eq!(n.send(port, frame.clone()), plain.send(port, frame));
                    }
                }
                assert_eq!(n.p.fast_forwarded(), 2, "both data segments");
                for (port, frame) in script.frames(&Op::Mangled(0, k)) {
                    let out = n.send(port, frame.clone());
                    assert_eq!(out, plain.send(port, frame), "mangle {k}, checks {checked}");
                }
                // Ethernet padding after the packet is no spoiling.
                let fast = if k == 7 { 3 } else { 2 };
                assert_eq!(n.p.fast_forwarded(), fast, "mangle {k}, checks {checked}");
            }
        }
    }
}

/// How many ways [`mangle`] knows.
const MANGLES: usize = 19;

/// The frame (from pod-a, `to_web`) spoiled in way `k` (7 only pads it),
/// and the port it
/// arrives on. With its header checksum fixed after the change unless
/// the change is the checksum.
fn mangle(mut f: Vec<u8>, k: usize) -> (PortId, Vec<u8>) {
    const IP: usize = 14;
    let fix = |f: &mut Vec<u8>| {
        let ihl = usize::from(f[IP] & 0x0f) * 4;
        let end = (IP + ihl.max(20)).min(f.len());
        f[IP + 10..IP + 12].fill(0);
        let sum = crate::wire::checksum::checksum(&f[IP..end]);
        f[IP + 10..IP + 12].copy_from_slice(&sum.to_be_bytes());
    };
    let mut port = A;
    match k {
        0 => f[IP + 10] ^= 0x40,
        1 => f[IP + 8] = 1,
        2 => f[IP + 8] = 0,
        3 => {
            // Four bytes of NOP options: IHL 6, total length + 4.
            f.splice(IP + 20..IP + 20, [1u8; 4]);
            f[IP] = 0x46;
            let total = u16::from_be_bytes([f[IP + 2], f[IP + 3]]) + 4;
            f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        }
        4 => f[IP + 6] |= 0x20,
        5 => {
            f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        }
        6 => {
            let total = u16::from_be_bytes([f[IP + 2], f[IP + 3]]) + 100;
            f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        }
        7 => f.extend_from_slice(&[0u8; 9]),
        8 => f[6] |= 1,
        9 => f[6..12].copy_from_slice(&GW_MAC),
        10 => f[..6].copy_from_slice(&MAC_B),
        11 => port = C,
        12 => f[IP + 20 + 12] = 0x40,
        13 => f[IP + 2..IP + 4].copy_from_slice(&30u16.to_be_bytes()),
        14 => f[IP] = 0x44,
        15 => f[IP] = 0x65,
        // Martian addresses (loopback source, multicast destination): the
        // fast path leaves them to the cache, which never holds them.
        16 => f[IP + 12..IP + 16].copy_from_slice(&[127, 0, 0, 1]),
        17 => f[IP + 16..IP + 20].copy_from_slice(&[224, 0, 0, 1]),
        // pod-b's MAC from pod-a's port: it moves the flow's next hop.
        _ => f[6..12].copy_from_slice(&MAC_B),
    }
    if k != 0 && k != 5 {
        fix(&mut f);
    }
    (port, f)
}

/// [`config`] with source checks on the pod ports (each its MAC and address).
fn checked_config(web_endpoints: &str) -> NodeConfig {
    let mut cfg = config(web_endpoints);
    for (port, (mac, ip)) in cfg
        .ports
        .iter_mut()
        .zip([(MAC_A, IP_A), (MAC_B, IP_B), (MAC_C, IP_C)])
    {
        port.mac = Some(crate::wire::MacAddr(mac));
        port.ips = vec![std::net::Ipv4Addr::from(ip)];
    }
    cfg
}
