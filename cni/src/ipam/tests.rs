use super::*;

/// A throw-away directory, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "podswitch-cni-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn range(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeConf {
    RangeConf {
        subnet: subnet.to_string(),
        range_start: start.map(|s| s.parse().unwrap()),
        range_end: end.map(|s| s.parse().unwrap()),
        gateway: gw.map(|s| s.parse().unwrap()),
    }
}

fn sets(conf: Vec<Vec<RangeConf>>) -> Vec<Vec<Range>> {
    ranges_from_conf(&conf).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn files(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn allocates_round_robin_and_writes_host_local_files() {
    let tmp = TempDir::new("rr");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.2.0/29", None, None, None)]]);
    // .0 network, .1 gateway, .7 broadcast: .2 … .6 usable.
    let mut got = Vec::new();
    for i in 0..5 {
        let a = store.allocate(&s, &format!("c{i}"), "eth0", &[]).unwrap();
        assert_eq!(a[0].gateway, ip("10.1.2.1"));
        assert_eq!(a[0].address.prefix, 29);
        got.push(a[0].address.addr.to_string());
    }
    assert_eq!(
        got,
        ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]
    );
    assert_eq!(
        std::fs::read_to_string(store.dir().join("10.1.2.3")).unwrap(),
        "c1\neth0"
    );
    assert_eq!(
        std::fs::read_to_string(store.dir().join("last_reserved_ip.0")).unwrap(),
        "10.1.2.6"
    );
    // Exhausted: a clear error, nothing new on disk.
    let before = files(&store);
    let err = store.allocate(&s, "c9", "eth0", &[]).unwrap_err();
    assert_eq!(err.code, code::RANGE_EXHAUSTED, "{err}");
    assert!(err.details.contains("10.1.2.0/29"), "{err}");
    assert_eq!(files(&store), before);
    // Release one in the middle: round-robin continues after the last
    // reserved and wraps to it, never to network, gateway or broadcast.
    assert_eq!(store.release("c2", "eth0").unwrap(), vec![ip("10.1.2.4")]);
    let a = store.allocate(&s, "c10", "eth0", &[]).unwrap();
    assert_eq!(a[0].address.addr, ip("10.1.2.4"));
}

#[test]
fn round_robin_does_not_hand_back_the_released_address_first() {
    let tmp = TempDir::new("rr2");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.2.0/24", None, None, None)]]);
    let a = store.allocate(&s, "a", "eth0", &[]).unwrap()[0]
        .address
        .addr;
    store.release("a", "eth0").unwrap();
    let b = store.allocate(&s, "a", "eth0", &[]).unwrap()[0]
        .address
        .addr;
    assert_eq!((a, b), (ip("10.1.2.2"), ip("10.1.2.3")));
}

#[test]
fn never_network_broadcast_or_gateway_even_inside_the_range() {
    let tmp = TempDir::new("gw");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range(
        "10.9.0.0/29",
        Some("10.9.0.1"),
        Some("10.9.0.6"),
        Some("10.9.0.3"),
    )]]);
    let mut got = HashSet::new();
    while let Ok(a) = store.allocate(&s, &format!("c{}", got.len()), "eth0", &[]) {
        got.insert(a[0].address.addr);
        assert!(got.len() < 10, "bounded");
    }
    let expect: HashSet<IpAddr> = ["10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        .iter()
        .map(|s| ip(s))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn requested_ip_inside_outside_taken_and_gateway() {
    let tmp = TempDir::new("req");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.0.0/24", None, None, None)]]);
    let a = store.allocate(&s, "a", "eth0", &[ip("10.1.0.77")]).unwrap();
    assert_eq!(a[0].address.to_string(), "10.1.0.77/24");
    let err = store
        .allocate(&s, "b", "eth0", &[ip("10.1.0.77")])
        .unwrap_err();
    assert_eq!(err.code, code::ADDRESS_CONFLICT);
    assert!(err.details.contains("10.1.0.77"), "{err}");
    let err = store
        .allocate(&s, "b", "eth0", &[ip("10.2.0.5")])
        .unwrap_err();
    assert_eq!(err.code, code::INVALID_ENV);
    assert!(err.details.contains("CNI_ARGS IP = 10.2.0.5"), "{err}");
    let err = store
        .allocate(&s, "b", "eth0", &[ip("10.1.0.1")])
        .unwrap_err();
    assert!(err.details.contains("gateway"), "{err}");
    assert_eq!(files(&store), ["10.1.0.77", "last_reserved_ip.0", "lock"]);
}

#[test]
fn duplicate_add_is_an_error_and_other_ifnames_are_separate() {
    let tmp = TempDir::new("dup");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.0.0/24", None, None, None)]]);
    store.allocate(&s, "a", "eth0", &[]).unwrap();
    let err = store.allocate(&s, "a", "eth0", &[]).unwrap_err();
    assert_eq!(err.code, code::ADDRESS_CONFLICT);
    assert!(err.msg.contains("duplicate"), "{err}");
    store.allocate(&s, "a", "net1", &[]).unwrap();
    assert_eq!(store.find("a", "eth0").unwrap().len(), 1);
    assert_eq!(store.release("a", "eth0").unwrap().len(), 1);
    assert_eq!(store.find("a", "net1").unwrap().len(), 1);
}

#[test]
fn release_of_unknown_id_succeeds_and_legacy_files_match_by_id() {
    let tmp = TempDir::new("rel");
    let store = Store::open(&tmp.0, "net").unwrap();
    assert_eq!(
        store.release("nobody", "eth0").unwrap(),
        Vec::<IpAddr>::new()
    );
    std::fs::write(store.dir().join("10.1.0.9"), "legacy\r\n").unwrap();
    std::fs::write(store.dir().join("10.1.0.10"), "  c\r\neth0 \n").unwrap();
    assert_eq!(
        store.release("legacy", "eth0").unwrap(),
        vec![ip("10.1.0.9")]
    );
    assert_eq!(store.release("c", "eth0").unwrap(), vec![ip("10.1.0.10")]);
}

#[test]
fn dual_stack_gives_one_address_per_set_and_rolls_back_on_failure() {
    let tmp = TempDir::new("ds");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![
        vec![range("10.1.0.0/24", None, None, None)],
        vec![range("fd00::/126", None, None, None)],
    ]);
    let a = store.allocate(&s, "a", "eth0", &[]).unwrap();
    assert_eq!(a[0].address.to_string(), "10.1.0.2/24");
    assert_eq!(a[1].address.to_string(), "fd00::2/126");
    assert_eq!(a[1].gateway, ip("fd00::1"));
    // The v6 set (/126: only ::2 usable) is full: the v4 reservation of the
    // failed ADD must not stay behind.
    let before = files(&store);
    let err = store.allocate(&s, "b", "eth0", &[]).unwrap_err();
    assert_eq!(err.code, code::RANGE_EXHAUSTED);
    assert_eq!(files(&store), before);
}

#[test]
fn multi_range_sets_wrap_across_ranges() {
    let tmp = TempDir::new("mr");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![
        range("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.11"), None),
        range("10.2.0.0/24", Some("10.2.0.10"), Some("10.2.0.10"), None),
    ]]);
    let got: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            store.allocate(&s, id, "eth0", &[]).unwrap()[0]
                .address
                .to_string()
        })
        .collect();
    assert_eq!(got, ["10.1.0.10/24", "10.1.0.11/24", "10.2.0.10/24"]);
    store.release("a", "eth0").unwrap();
    let d = store.allocate(&s, "d", "eth0", &[]).unwrap();
    assert_eq!(d[0].address.to_string(), "10.1.0.10/24");
}

#[test]
fn bad_ranges_are_code_7_naming_the_key() {
    let cases = [
        (
            range("10.1.0.5/24", None, None, None),
            "ipam.ranges[0][0].subnet = 10.1.0.5/24",
        ),
        (range("10.1.0.0/31", None, None, None), "too small"),
        (
            range("10.1.0.0/33", None, None, None),
            "ipam.ranges[0][0].subnet",
        ),
        (range("banana", None, None, None), "\"banana\""),
        (
            range("10.1.0.0/24", Some("10.2.0.1"), None, None),
            "rangeStart = 10.2.0.1",
        ),
        (
            range("10.1.0.0/24", None, Some("10.1.0.255"), None),
            "rangeEnd = 10.1.0.255",
        ),
        (
            range("10.1.0.0/24", Some("10.1.0.9"), Some("10.1.0.8"), None),
            "after rangeEnd",
        ),
        (
            range("10.1.0.0/24", None, None, Some("10.1.1.1")),
            "gateway = 10.1.1.1",
        ),
    ];
    for (conf, needle) in cases {
        let err = ranges_from_conf(&[vec![conf]]).unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        assert!(err.details.contains(needle), "{needle}: {err}");
    }
    let err = ranges_from_conf(&[
        vec![range("10.1.0.0/16", None, None, None)],
        vec![range("10.1.2.0/24", None, None, None)],
    ])
    .unwrap_err();
    assert!(err.details.contains("overlaps"), "{err}");
}

#[test]
fn gc_keeps_only_valid_attachments() {
    let tmp = TempDir::new("gc");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.0.0/24", None, None, None)]]);
    for id in ["a", "b", "c"] {
        store.allocate(&s, id, "eth0", &[]).unwrap();
    }
    let keep: HashSet<(String, String)> = [("b".to_string(), "eth0".to_string())].into();
    let mut gone = store.retain(&keep).unwrap();
    gone.sort();
    assert_eq!(gone, vec![ip("10.1.0.2"), ip("10.1.0.4")]);
    assert_eq!(store.reservations().unwrap().len(), 1);
}

#[test]
fn concurrent_allocations_from_threads_are_unique() {
    let tmp = TempDir::new("conc");
    let s = sets(vec![vec![range("10.1.0.0/24", None, None, None)]]);
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let dir = tmp.0.clone();
            let s = s.clone();
            std::thread::spawn(move || {
                let store = Store::open(&dir, "net").unwrap();
                store.allocate(&s, &format!("c{i}"), "eth0", &[]).unwrap()[0].address
            })
        })
        .collect();
    let got: HashSet<Cidr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got.len(), 16);
}

#[test]
fn taken_addresses_are_skipped_and_refused_when_requested() {
    let tmp = TempDir::new("taken");
    let store = Store::open(&tmp.0, "net").unwrap();
    let s = sets(vec![vec![range("10.1.2.0/29", None, None, None)]]);
    let taken: BTreeMap<IpAddr, String> = ["10.1.2.2", "10.1.2.3", "10.1.2.5"]
        .into_iter()
        .map(|a| (ip(a), format!("port {a}")))
        .collect();
    let mut got = Vec::new();
    for i in 0..2 {
        let a = store
            .allocate_except(&s, &format!("c{i}"), "eth0", &[], &taken)
            .unwrap();
        got.push(a[0].address.addr.to_string());
    }
    assert_eq!(got, ["10.1.2.4", "10.1.2.6"]);
    // .2, .3 and .5 are taken, .4 and .6 reserved: none left.
    let err = store
        .allocate_except(&s, "c9", "eth0", &[], &taken)
        .unwrap_err();
    assert_eq!(err.code, code::RANGE_EXHAUSTED, "{err:?}");
    let err = store
        .allocate_except(&s, "c9", "eth0", &[ip("10.1.2.5")], &taken)
        .unwrap_err();
    assert_eq!(err.code, code::ADDRESS_CONFLICT);
    assert!(
        err.details.contains("already the address of port 10.1.2.5"),
        "{err:?}"
    );
}
