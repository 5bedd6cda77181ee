use super::*;
use crate::services::flow_hash;

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn spec(vip: [u8; 4], port: u16, protocol: Protocol, backends: Vec<BackendSpec>) -> ServiceSpec {
    ServiceSpec {
        external_local: false,
        vip: ip(vip),
        port,
        protocol,
        target_port: 8080,
        node_port: None,
        affinity: None,
        backends,
    }
}

fn backend(last: u8, ready: bool, terminating: bool) -> BackendSpec {
    BackendSpec {
        addr: ip([10, 244, 1, last]),
        port: 8080,
        ready,
        terminating,
    }
}

/// A deterministic stream of client flows (64-bit LCG, Knuth's constants).
fn flows(n: usize, seed: u64) -> impl Iterator<Item = (Ipv4Addr, u16)> {
    let mut state = seed;
    (0..n).map(move |_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v = state >> 16;
        (
            Ipv4Addr::from(0x0af4_0000 | (v as u32 & 0xffff)),
            (v >> 16) as u16 | 1024,
        )
    })
}

#[test]
fn lookups_by_vip_port_and_protocol() {
    let vip = [10, 96, 0, 10];
    let t = ServiceTable::new(vec![
        spec(vip, 53, Protocol::Udp, vec![backend(1, true, false)]),
        spec(vip, 53, Protocol::Tcp, vec![backend(2, true, false)]),
        spec(vip, 9153, Protocol::Tcp, vec![backend(3, true, false)]),
        spec([10, 96, 0, 11], 53, Protocol::Sctp, vec![]),
    ])
    .unwrap();
    assert_eq!(t.len(), 4);
    let udp = t.lookup_cluster(Protocol::Udp, ip(vip), 53).unwrap();
    assert_eq!(udp.select(7).unwrap().addr, ip([10, 244, 1, 1]));
    let tcp = t.lookup_cluster(Protocol::Tcp, ip(vip), 53).unwrap();
    assert_eq!(tcp.select(7).unwrap().addr, ip([10, 244, 1, 2]));
    assert_eq!(
        t.lookup_cluster(Protocol::Tcp, ip(vip), 9153)
            .unwrap()
            .port(),
        9153
    );
    assert!(t.lookup_cluster(Protocol::Sctp, ip(vip), 53).is_none());
    assert!(t.lookup_cluster(Protocol::Udp, ip(vip), 54).is_none());
    assert!(
        t.lookup_cluster(Protocol::Udp, ip([10, 96, 0, 12]), 53)
            .is_none()
    );
    assert!(
        t.lookup_cluster(Protocol::Sctp, ip([10, 96, 0, 11]), 53)
            .is_some()
    );
    assert_eq!(Protocol::from_number(17), Some(Protocol::Udp));
    assert_eq!(Protocol::from_number(1), None);
}

#[test]
fn node_port_lookup() {
    let mut web = spec(
        [10, 96, 0, 20],
        80,
        Protocol::Tcp,
        vec![backend(5, true, false)],
    );
    web.node_port = Some(30080);
    web.affinity = Some(Duration::from_secs(10_800));
    let mut dns = spec(
        [10, 96, 0, 10],
        53,
        Protocol::Udp,
        vec![backend(6, true, false)],
    );
    dns.node_port = Some(30080);
    let t = ServiceTable::new(vec![web, dns]).unwrap();
    let e = t.lookup_node_port(Protocol::Tcp, 30080).unwrap();
    assert_eq!(e.vip(), ip([10, 96, 0, 20]));
    assert_eq!(e.node_port(), Some(30080));
    assert_eq!(e.affinity_timeout(), Some(Duration::from_secs(10_800)));
    assert_eq!(t.lookup_node_port(Protocol::Udp, 30080).unwrap().port(), 53);
    assert!(t.lookup_node_port(Protocol::Tcp, 30081).is_none());
    assert!(t.lookup_node_port(Protocol::Sctp, 30080).is_none());
    // The ClusterIP side stays reachable too.
    assert!(
        t.lookup_cluster(Protocol::Tcp, ip([10, 96, 0, 20]), 80)
            .is_some()
    );
}

#[test]
fn duplicates_and_zero_ports_rejected() {
    let a = spec([10, 96, 0, 1], 80, Protocol::Tcp, vec![]);
    let err = ServiceTable::new(vec![a.clone(), a.clone()]).unwrap_err();
    assert!(matches!(
        err,
        ServiceTableError::DuplicateCluster {
            first: 0,
            second: 1,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "services 0 and 1 both use Tcp 10.96.0.1:80"
    );
    let mut b = spec([10, 96, 0, 2], 80, Protocol::Tcp, vec![]);
    let mut c = spec([10, 96, 0, 3], 80, Protocol::Tcp, vec![]);
    b.node_port = Some(30000);
    c.node_port = Some(30000);
    assert!(matches!(
        ServiceTable::new(vec![b, c]).unwrap_err(),
        ServiceTableError::DuplicateNodePort {
            node_port: 30000,
            ..
        }
    ));
    let zero = spec([10, 96, 0, 4], 0, Protocol::Tcp, vec![]);
    assert!(matches!(
        ServiceTable::new(vec![zero]).unwrap_err(),
        ServiceTableError::ZeroPort { index: 0, .. }
    ));
}

#[test]
fn terminating_and_unready_get_no_new_flows_but_exist() {
    let s = spec(
        [10, 96, 0, 30],
        443,
        Protocol::Tcp,
        vec![
            backend(1, true, false),
            backend(2, false, false),
            backend(3, false, true),
            backend(4, true, true),
        ],
    );
    let e = ServiceEntry::new(&s);
    assert!(!e.has_no_ready_backend());
    assert_eq!(e.selectable_backends().len(), 1);
    assert_eq!(e.backends().len(), 4);
    for (src, sport) in flows(1000, 1) {
        let h = flow_hash(src, e.vip(), sport, 443, 6);
        assert_eq!(e.select(h).unwrap().addr, ip([10, 244, 1, 1]));
    }
    for last in 1..=4 {
        assert!(e.backend_exists(ip([10, 244, 1, last]), 8080));
    }
    assert!(!e.backend_exists(ip([10, 244, 1, 1]), 8081));
    assert!(!e.backend_exists(ip([10, 244, 1, 5]), 8080));
}

#[test]
fn no_ready_backend_is_flagged() {
    let s = spec(
        [10, 96, 0, 31],
        80,
        Protocol::Tcp,
        vec![backend(1, false, false), backend(2, true, true)],
    );
    let e = ServiceEntry::new(&s);
    assert!(e.has_no_ready_backend());
    assert_eq!(e.select(12345), None);
    assert!(e.backend_exists(ip([10, 244, 1, 2]), 8080));
    let empty = ServiceEntry::new(&spec([10, 96, 0, 32], 80, Protocol::Tcp, vec![]));
    assert!(empty.has_no_ready_backend());
    assert_eq!(empty.select(0), None);
}

#[test]
fn flows_spread_evenly_over_ready_backends() {
    let s = spec(
        [10, 96, 0, 40],
        80,
        Protocol::Tcp,
        vec![
            backend(1, true, false),
            backend(2, true, false),
            backend(3, true, false),
            backend(4, false, true),
        ],
    );
    let t = ServiceTable::new(vec![s]).unwrap();
    let e = t
        .lookup_cluster(Protocol::Tcp, ip([10, 96, 0, 40]), 80)
        .unwrap();
    let mut hits = [0u32; 3];
    for (src, sport) in flows(3000, 42) {
        let b = e.select(flow_hash(src, e.vip(), sport, 80, 6)).unwrap();
        let last = b.addr.octets()[3];
        assert!((1..=3).contains(&last), "terminating backend selected");
        hits[usize::from(last - 1)] += 1;
    }
    // ±15 % of 1000 each.
    assert!(hits.iter().all(|&k| (850..=1150).contains(&k)), "{hits:?}");
}

#[test]
fn selection_is_stable_across_rebuilds_and_order() {
    let backends: Vec<_> = (1..=10).map(|i| backend(i, true, false)).collect();
    let mut reversed = backends.clone();
    reversed.reverse();
    let a = ServiceEntry::new(&spec([10, 96, 0, 50], 80, Protocol::Tcp, backends));
    let b = ServiceEntry::new(&spec([10, 96, 0, 50], 80, Protocol::Tcp, reversed));
    for (src, sport) in flows(2000, 7) {
        let h = flow_hash(src, a.vip(), sport, 80, 6);
        assert_eq!(a.select(h), b.select(h));
    }
}

#[test]
fn a_backend_turning_unready_moves_only_its_flows() {
    let mut backends: Vec<_> = (1..=10).map(|i| backend(i, true, false)).collect();
    let before = ServiceEntry::new(&spec([10, 96, 0, 60], 80, Protocol::Tcp, backends.clone()));
    backends[4].ready = false;
    let after = ServiceEntry::new(&spec([10, 96, 0, 60], 80, Protocol::Tcp, backends));
    // Readiness does not resize the table.
    assert_eq!(before.maglev().size(), after.maglev().size());
    let (mut others, mut others_moved) = (0, 0);
    for (src, sport) in flows(20_000, 9) {
        let h = flow_hash(src, before.vip(), sport, 80, 6);
        let (x, y) = (before.select(h).unwrap(), after.select(h).unwrap());
        if x.addr != ip([10, 244, 1, 5]) {
            others += 1;
            others_moved += u32::from(x != y);
        }
    }
    assert!(f64::from(others_moved) / f64::from(others) < 0.03);
}

#[test]
fn memory_is_counted() {
    let t = ServiceTable::new(vec![spec(
        [10, 96, 0, 70],
        80,
        Protocol::Tcp,
        (1..=3).map(|i| backend(i, true, false)).collect(),
    )])
    .unwrap();
    // 347 two-byte slots at least.
    assert!(t.memory_bytes() > 694);
    assert!(ServiceTable::default().is_empty());
    assert_eq!(ServiceTable::default().memory_bytes(), 0);
}
