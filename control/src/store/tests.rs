use super::*;
use crate::state::{Endpoint, Service, ServicePort};

fn service(i: u32) -> Service {
    Service {
        name: format!("default/svc-{i}").into(),
        cluster_ip: std::net::Ipv4Addr::from(0x0a60_0000 + i),
        ports: vec![ServicePort {
            name: Default::default(),
            protocol: "TCP".into(),
            port: 80,
            target_port: Some(8080),
            node_port: None,
        }],
        session_affinity: "None".into(),
        affinity_timeout_secs: 10800,
        external_ips: Vec::new(),
        external_traffic_policy: "Cluster".into(),
        internal_traffic_policy: "Cluster".into(),
        source: Default::default(),
    }
}

#[test]
fn a_diff_written_on_another_thread_is_committed_only_when_told() {
    let dir = std::env::temp_dir().join(format!("podswitch-store-if-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let empty = ApiState::default();
    let mut a = ApiState::default();
    for i in 0..10 {
        a.services.insert(service(i).name.clone(), service(i));
    }
    let (go, decision) = std::sync::mpsc::channel();
    let stored = std::thread::scope(|scope| {
        let (store, empty, a) = (&store, &empty, &a);
        let writer = scope
            .spawn(move || store.commit_diff_if(empty, a, || decision.recv().unwrap_or(false)));
        go.send(false).unwrap();
        writer.join().unwrap()
    });
    assert!(!stored.unwrap(), "told not to: not committed");
    assert_eq!(store.load().unwrap(), empty);
    // A caller that goes away (its sender dropped) is a no as well.
    let (go, decision) = std::sync::mpsc::channel::<bool>();
    drop(go);
    assert!(
        !store
            .commit_diff_if(&empty, &a, || decision.recv().unwrap_or(false))
            .unwrap()
    );
    assert_eq!(store.load().unwrap(), empty);
    assert!(store.commit_diff_if(&empty, &a, || true).unwrap());
    drop(store);
    assert_eq!(Store::open(&dir).unwrap().load().unwrap(), a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn round_trip_and_minimal_writes() {
    let dir = std::env::temp_dir().join(format!("podswitch-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load().unwrap(), ApiState::default());
    let mut a = ApiState::default();
    for i in 0..100 {
        a.services.insert(service(i).name.clone(), service(i));
    }
    a.endpoints.insert(
        "default/svc-1".into(),
        vec![Endpoint {
            address: "10.244.1.5".parse().unwrap(),
            ready: true,
            terminating: false,
            node: Default::default(),
            serving: None,
            ports: Default::default(),
        }],
    );
    a.port_ids.insert("pod-a".into(), 0);
    let c = changes(&ApiState::default(), &a);
    assert_eq!(c.len(), 102);
    store.commit(&c).unwrap();
    assert_eq!(store.load().unwrap(), a);
    let mut b = a.clone();
    b.services.remove("default/svc-7");
    b.services.insert(service(100).name.clone(), service(100));
    let c = changes(&a, &b);
    assert_eq!(c.len(), 2, "one delete, one put");
    store.commit(&c).unwrap();
    drop(store);
    let reopened = Store::open(&dir).unwrap();
    assert_eq!(reopened.load().unwrap(), b);
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("podswitch-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Services with endpoints of every kind (node, serving, port map).
fn state_with_endpoints(services: u32) -> ApiState {
    let mut state = ApiState::default();
    for i in 0..services {
        let s = service(i);
        let endpoint = |e: u32| Endpoint {
            address: std::net::Ipv4Addr::from(0x0af4_0000 + i * 16 + e),
            ready: e != 1,
            terminating: e == 2,
            node: crate::state::NodeName::new(if e == 0 { "" } else { "node-1" }),
            serving: (e > 1).then_some(e == 2),
            ports: [("", 8080 + e)].into_iter().take(e as usize % 2).collect(),
        };
        state
            .endpoints
            .insert(s.name.clone(), (0..4).map(endpoint).collect());
        state.services.insert(s.name.clone(), s);
    }
    state.port_ids.insert("pod-a".into(), 0);
    state
}

/// The keys of `state` with services and endpoints as JSON values, as
/// builds before the binary records wrote them.
fn json_changes(state: &ApiState) -> Vec<Change> {
    let mut keys: Vec<Change> = changes(&ApiState::default(), state)
        .into_iter()
        .filter(|c| !matches!(c, Change::Put(TableId::Services | TableId::Endpoints, ..)))
        .collect();
    for (name, s) in &state.services {
        keys.push(Change::put(TableId::Services, name, s));
    }
    for (name, list) in &state.endpoints {
        keys.push(Change::put(TableId::Endpoints, name, list));
    }
    keys
}

#[test]
fn a_store_of_json_values_reads_back_and_is_rewritten_key_by_key() {
    let dir = temp_dir("json");
    let a = state_with_endpoints(20);
    let store = Store::open(&dir).unwrap();
    store.commit(&json_changes(&a)).unwrap();
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.load().unwrap(), a, "JSON values read back equal");
    // A change writes its keys as records; the others stay JSON, and
    // both read back.
    let mut b = a.clone();
    let name = compact_str::CompactString::from("default/svc-3");
    b.endpoints.get_mut(&name).unwrap().pop();
    b.services.get_mut(&name).unwrap().affinity_timeout_secs = 60;
    store.commit_diff(&a, &b).unwrap();
    let raw = |table: TableDefinition<&str, &[u8]>, key: &str| {
        let txn = store.db().unwrap().begin_read().unwrap();
        let value = txn.open_table(table).unwrap().get(key).unwrap().unwrap();
        value.value().to_vec()
    };
    assert!(record::is_record(&raw(SERVICES, &name)));
    assert!(record::is_record(&raw(ENDPOINTS, &name)));
    assert_eq!(raw(SERVICES, "default/svc-4").first(), Some(&b'{'));
    drop(store);
    assert_eq!(Store::open(&dir).unwrap().load().unwrap(), b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_are_far_smaller_than_json() {
    let a = state_with_endpoints(100);
    let size = |keys: Vec<Change>| -> usize {
        keys.iter()
            .map(|c| match c {
                Change::Put(TableId::Services | TableId::Endpoints, _, v) => v.len(),
                _ => 0,
            })
            .sum()
    };
    let (records, json) = (
        size(changes(&ApiState::default(), &a)),
        size(json_changes(&a)),
    );
    assert!(
        records * 3 < json,
        "{records} bytes as records, {json} as JSON"
    );
}

#[test]
fn a_damaged_record_is_damage_that_names_it() {
    let dir = temp_dir("bad-record");
    let store = Store::open(&dir).unwrap();
    let a = state_with_endpoints(3);
    store.commit(&changes(&ApiState::default(), &a)).unwrap();
    let mut noise = Vec::new();
    record::put_endpoints(&mut noise, &a.endpoints["default/svc-1"]);
    noise[20] ^= 0xa5;
    let key = "default/svc-1".to_string();
    let len = noise.len();
    store
        .commit(&[Change::Put(TableId::Endpoints, key, noise)])
        .unwrap();
    drop(store);
    // Found at start, before anything is written to the file.
    let Err(err) = Store::open(&dir) else {
        panic!("a damaged record opened")
    };
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains(&format!(
            "state.redb is damaged: stored endpoints/default/svc-1 does not decode: \
                 its checksum is wrong ({len} bytes): the record is damaged"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
