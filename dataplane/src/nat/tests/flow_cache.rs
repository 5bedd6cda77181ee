//! The pipeline's established-flow cache: routed packets of tracked flows
//! take it, and it never changes what comes out — checked against the
//! same node with the cache off, packet by packet.

use super::*;

/// A node whose workers have no flow cache.
fn without_cache(web_endpoints: &str) -> Node {
    let mut cfg = config(web_endpoints);
    cfg.conntrack.flow_cache_entries = 0;
    Node::with(cfg, SharedTables::new(4096, Timeouts::default()))
}

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
                Op::Endpoints(_) | Op::Flush | Op::Wait(_) => Vec::new(),
            }
        }
    }

    fn apply(n: &mut Node, op: &Op, generation: u64) {
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
        fn the_cache_changes_nothing_but_speed(ops in proptest::collection::vec(op(), 1..60)) {
            let mut cached = Node::new();
            let mut plain = without_cache(WEB_ON_B);
            let mut script = Script { client_seq: [100; 3], server_seq: [500; 3], generation: 1 };
            for op in &ops {
                if matches!(op, Op::Endpoints(_)) {
                    script.generation += 1;
                }
                apply(&mut cached, op, script.generation);
                apply(&mut plain, op, script.generation);
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
        // The differential test means something only if the cache is used.
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
    }
}
