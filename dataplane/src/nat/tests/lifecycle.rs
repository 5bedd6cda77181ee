//! Flows over time: removed and terminating endpoints, affinity, a flood of new flows, arbitrary frames.

use super::*;

#[test]
fn removed_endpoint_flows_are_reresolved_or_reset() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    // web moves from B to C: the established connection's next segment gets
    // a RST back to the client.
    n.reconfigure(config(r#"{ address = "10.244.1.4" }"#), 2);
    let data = to_web(CLIENT, 101, Flags::Ack(501), b"more");
    let rst = n.through(A, data, A);
    assert_eq!((rst.src, rst.dst), ((WEB, 80), CLIENT));
    assert_eq!(rst.tcp.map(|t| t.4), Some(true));
    assert_eq!(n.drops(DropReason::ServiceEndpointRemoved), 1);
    // A new SYN on the same tuple lands on C.
    let syn = n.through(A, to_web(CLIENT, 9000, Flags::Syn, b""), C);
    assert_eq!(syn.dst, (IP_C, 8080));
    assert!(n.events(Event::FlowReresolved) >= 1);
}

#[test]
fn removed_udp_endpoint_is_reresolved_without_a_flush() {
    let two = r#"{ address = "10.244.1.3" }"#;
    let mut cfg = config(two);
    cfg.services[1].endpoints = vec![crate::config::EndpointSection {
        address: IP_B.into(),
        port: None,
        ready: true,
        terminating: false,
    }];
    let mut n = Node::with(cfg.clone(), SharedTables::default());
    let client = (IP_A, 33333);
    n.through(A, udp((MAC_A, GW_MAC), client, (DNS, 53), b"q"), B);
    cfg.services[1].endpoints[0].address = IP_C.into();
    n.reconfigure(cfg, 2);
    let q = n.through(A, udp((MAC_A, GW_MAC), client, (DNS, 53), b"q"), C);
    assert_eq!(q.dst, (IP_C, 5353));
    assert_eq!(n.events(Event::FlowReresolved), 1);
    let r = n.through(C, udp((MAC_C, MAC_A), (IP_C, 5353), client, b"a"), A);
    assert_eq!(r.src, (DNS, 53));
}

#[test]
fn terminating_endpoint_keeps_its_flows_but_gets_no_new_ones() {
    let both = r#"{ address = "10.244.1.3" }, { address = "10.244.1.4" }"#;
    let mut n = Node::with(config(both), SharedTables::default());
    // Find a connection that landed on B.
    let mut on_b = None;
    for sport in 40000..40100 {
        let f = n.send(A, to_web((IP_A, sport), 1, Flags::Syn, b""));
        if f[0].1 == Verdict::Forward(B) {
            on_b = Some(sport);
            break;
        }
    }
    let sport = on_b.expect("Maglev sends some flows to B");
    n.through(
        B,
        tcp(
            (MAC_B, MAC_A),
            (IP_B, 8080),
            (IP_A, sport),
            500,
            Flags::SynAck(2),
            b"",
        ),
        A,
    );
    let terminating =
        r#"{ address = "10.244.1.3", terminating = true }, { address = "10.244.1.4" }"#;
    n.reconfigure(config(terminating), 2);
    n.through(A, to_web((IP_A, sport), 2, Flags::Ack(501), b""), B);
    for sport in 50000..50050 {
        n.through(A, to_web((IP_A, sport), 1, Flags::Syn, b""), C);
    }
    assert_eq!(n.events(Event::FlowReresolved), 0);
}

#[test]
fn affinity_keeps_a_client_on_one_endpoint() {
    let mut n = Node::new();
    let mut ports = std::collections::HashSet::new();
    for sport in 1000..1030 {
        let out = n.send(
            B,
            tcp(
                (MAC_B, GW_MAC),
                (IP_B, sport),
                (STICKY, 80),
                1,
                Flags::Syn,
                b"",
            ),
        );
        ports.insert(format!("{:?}", out[0].1));
    }
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(n.p.shared_tables().affinity.len(), 1);
}

#[test]
fn flood_of_ten_times_capacity_keeps_established_flows() {
    const CAP: usize = 1024;
    let mut n = Node::with(
        config(WEB_ON_B),
        SharedTables::new(CAP, Timeouts::default()),
    );
    let established: Vec<Ep> = (0..64).map(|i| (IP_A, 20000 + i)).collect();
    for &c in &established {
        handshake(&mut n, c);
    }
    let ct_len = || n.p.shared_tables().conntrack.len();
    assert_eq!(ct_len(), 64);
    let mut batch = Batch::with_size(32, 256);
    let mut sent = 0u32;
    while sent < 10 * CAP as u32 {
        batch.clear();
        for _ in 0..32 {
            let client = (
                [10, 244, 1, 100 + (sent % 100) as u8],
                1024 + (sent / 100) as u16,
            );
            let syn = tcp((MAC_C, GW_MAC), client, (WEB, 80), 1, Flags::Syn, b"");
            assert!(batch.push_rx(C, n.now, &syn));
            sent += 1;
        }
        n.now += 1_000_000;
        n.p.process(&mut batch, n.now);
        assert!(batch.iter().all(|(_, v)| v == Verdict::Forward(B)));
    }
    let ct = &n.p.shared_tables().conntrack;
    assert!(
        ct.len() <= ct.capacity(),
        "{} > {}",
        ct.len(),
        ct.capacity()
    );
    assert!(
        n.events(Event::ConntrackEvicted) > 8 * CAP as u64,
        "{}",
        n.events(Event::ConntrackEvicted)
    );
    assert_eq!(ct.stats().evicted_assured, 0, "assured flows were evicted");
    for &c in &established {
        let f = n.through(A, to_web(c, 101, Flags::Ack(501), b"still"), B);
        assert_eq!(f.dst, (IP_B, 8080));
        let r = n.through(B, web_reply(c, 501, Flags::Ack(106), b"here"), A);
        assert_eq!(r.src, (WEB, 80));
    }
}

/// Runs `frames` (from `port`) in batches of 32; returns the verdicts.
fn run_batches(n: &mut Node, port: PortId, frames: &[Vec<u8>]) -> Vec<Verdict> {
    let mut batch = Batch::with_size(32, 256);
    let mut verdicts = Vec::with_capacity(frames.len());
    for chunk in frames.chunks(32) {
        batch.clear();
        for f in chunk {
            assert!(batch.push_rx(port, n.now, f));
        }
        n.now += 1_000_000;
        n.p.process(&mut batch, n.now);
        verdicts.extend(batch.iter().take(chunk.len()).map(|(_, v)| v));
    }
    verdicts
}

/// A segment from pod C's `port` to web.
fn from_c(port: u16, seq: u32, flags: Flags) -> Vec<u8> {
    tcp((MAC_C, GW_MAC), (IP_C, port), (WEB, 80), seq, flags, b"")
}

/// A node with a conntrack of `cap` entries (and `max_per_pod`) where pod
/// A has an established connection to web, idle from then on (the oldest
/// entry), and pod C then opened 10 × `cap` connections to web, a few at a
/// time, each through its handshake (assured), and keeps them open.
/// Returns the node and C's ports that got through.
fn flooded_by_pod_c(cap: usize, max_per_pod: Option<usize>) -> (Node, Vec<u16>) {
    let mut cfg = config(WEB_ON_B);
    cfg.conntrack.capacity = cap;
    cfg.conntrack.max_per_pod = max_per_pod;
    let mut n = Node::with(cfg, SharedTables::new(cap, Timeouts::default()));
    handshake(&mut n, CLIENT);
    let ports: Vec<u16> = (0..10 * cap as u16).map(|i| 1024 + i).collect();
    let mut open = Vec::new();
    for round in ports.chunks(4) {
        let syns: Vec<_> = round.iter().map(|&p| from_c(p, 1, Flags::Syn)).collect();
        let verdicts = run_batches(&mut n, C, &syns);
        let opened: Vec<u16> = round
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Verdict::Forward(B))
            .map(|(&p, _)| p)
            .collect();
        let synacks: Vec<_> = opened
            .iter()
            .map(|&p| {
                tcp(
                    (MAC_B, MAC_C),
                    (IP_B, 8080),
                    (IP_C, p),
                    9,
                    Flags::SynAck(2),
                    b"",
                )
            })
            .collect();
        run_batches(&mut n, B, &synacks);
        let acks: Vec<_> = opened
            .iter()
            .map(|&p| from_c(p, 2, Flags::Ack(10)))
            .collect();
        run_batches(&mut n, C, &acks);
        open.extend(opened);
        n.now += SEC / 10;
    }
    (n, open)
}

/// A's idle connection to web still works, the endpoint speaking first
/// (without its entry, the answer would reach A from B's own address, and
/// A would reset the connection).
fn idle_connection_works(n: &mut Node) {
    let r = n.through(B, web_reply(CLIENT, 501, Flags::Ack(101), b"here"), A);
    assert_eq!(r.src, (WEB, 80));
    let f = n.through(A, to_web(CLIENT, 101, Flags::Ack(505), b"still"), B);
    assert_eq!(f.dst, (IP_B, 8080));
}

#[test]
fn one_pod_opening_ten_times_capacity_leaves_another_pods_idle_connection() {
    const CAP: usize = 1024;
    let (mut n, open) = flooded_by_pod_c(CAP, None);
    idle_connection_works(&mut n);
    let ct = &n.p.shared_tables().conntrack;
    assert_eq!(
        ct.stats().evicted_assured,
        0,
        "an established flow was evicted"
    );
    // C got no more than its share (a quarter of the table by default); the
    // rest of its connections were refused, and A can still open new ones.
    let limit = CAP / 4;
    assert_eq!((open.len(), ct.len()), (limit, limit + 1));
    assert_eq!(ct.entries_from(IP_C.into()), limit as u32);
    assert_eq!(
        n.drops(DropReason::ConntrackPodLimit),
        (10 * CAP - limit) as u64
    );
    handshake(&mut n, (IP_A, 40001));
}

#[test]
fn without_a_pod_limit_a_full_table_refuses_new_flows_and_keeps_established_ones() {
    const CAP: usize = 1024;
    let (mut n, open) = flooded_by_pod_c(CAP, Some(0));
    idle_connection_works(&mut n);
    let ct = &n.p.shared_tables().conntrack;
    assert_eq!(
        ct.stats().evicted_assured,
        0,
        "an established flow was evicted"
    );
    assert_eq!(n.drops(DropReason::ConntrackPodLimit), 0);
    assert!(n.drops(DropReason::ConntrackFull) > (8 * CAP) as u64);
    // A new connection finds no room in its shard until C closes some: a
    // closing connection may be evicted.
    let fresh = to_web((IP_A, 40001), 100, Flags::Syn, b"");
    assert_eq!(
        n.verdict(A, fresh.clone()),
        Verdict::Drop(DropReason::ConntrackFull)
    );
    let fins: Vec<_> = open.iter().map(|&p| from_c(p, 2, Flags::Fin(10))).collect();
    run_batches(&mut n, C, &fins);
    assert_eq!(n.verdict(A, fresh), Verdict::Forward(B));
    assert_eq!(n.events(Event::ConntrackEvictedClosing), 1);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn seeds() -> Vec<(PortId, Vec<u8>)> {
        vec![
            (A, to_web(CLIENT, 1, Flags::Syn, b"abc")),
            (B, web_reply(CLIENT, 1, Flags::SynAck(2), b"")),
            (A, udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), b"q")),
            (A, udp((MAC_A, GW_MAC), CLIENT, (REMOTE, 53), b"q")),
            (
                UP,
                tcp(
                    (ROUTER, UP_MAC),
                    (EXTERNAL, 1),
                    (NODE, 30080),
                    1,
                    Flags::Syn,
                    b"",
                ),
            ),
            (A, echo((MAC_A, GW_MAC), IP_A, WEB, 1, false)),
            (
                A,
                tcp((MAC_A, GW_MAC), CLIENT, (EMPTY, 80), 1, Flags::Syn, b""),
            ),
            (
                A,
                tcp((MAC_A, GW_MAC), CLIENT, (SELF, 80), 1, Flags::Syn, b""),
            ),
            {
                let q = udp((GW_MAC, MAC_B), CLIENT, (IP_B, 5353), b"query");
                (B, icmp_error((MAC_B, MAC_A), IP_B, IP_A, (3, 3), &q, 1500))
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Arbitrary mutations of NAT-relevant frames never panic the pipeline.
        #[test]
        fn mutated_frames_never_panic(
            ops in proptest::collection::vec((0usize..9, any::<u16>(), any::<u8>(), 0usize..80), 1..40)
        ) {
            let mut n = Node::new();
            let seeds = seeds();
            for (which, at, byte, cut) in ops {
                let (port, mut frame) = seeds[which].clone();
                let at = usize::from(at) % frame.len();
                frame[at] = byte;
                frame.truncate(frame.len().saturating_sub(cut).max(1));
                n.send(port, frame);
            }
        }
    }
}
