//! The commit path's promise (control.rs): a change is validated and
//! everything it leads to built (the state, the dataplane snapshot, the
//! service table) before anything is stored; a change whose build fails
//! leaves the store and the served state as they were.
//!
//! The failing build here is a service table that cannot be built: an API
//! service whose external address and port are a config-file service's
//! cluster frontend passes the checks made before the build, and the table
//! refuses the duplicate frontend.

use std::net::Ipv4Addr;
use std::path::Path;

use podswitch_control::control::Control;
use podswitch_control::error::ControlError;
use podswitch_control::state::{Service, ServicePort, Source};
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;

mod common;

/// A config-file service, whose frontend an API service may not take.
const SERVICES: &str = r#"
[[services]]
name = "default/dns"
cluster_ip = "10.96.0.10"
protocol = "UDP"
port = 53
endpoints = []
"#;

fn control(dir: &Path) -> Control {
    let config = common::uplink_node("commit") + SERVICES;
    let file = NodeConfig::from_toml_str(&config).unwrap();
    Control::restore(file, Store::open(dir).unwrap()).unwrap().0
}

fn service(name: &str, cluster_ip: [u8; 4], external_ips: Vec<Ipv4Addr>) -> Service {
    Service {
        name: name.into(),
        cluster_ip: Ipv4Addr::from(cluster_ip),
        ports: vec![ServicePort {
            name: "".into(),
            protocol: "UDP".into(),
            port: 53,
            target_port: None,
            node_port: None,
        }],
        session_affinity: "None".into(),
        affinity_timeout_secs: 10_800,
        external_ips,
        external_traffic_policy: "Cluster".into(),
        internal_traffic_policy: "Cluster".into(),
        source: Source::Api,
    }
}

#[test]
fn a_change_whose_service_table_cannot_be_built_stores_and_publishes_nothing() {
    let dir = common::temp_dir("commit", "table");
    let mut c = control(&dir);
    c.add_service(service("default/ok", [10, 96, 0, 20], vec![]), vec![])
        .unwrap();
    let generation = c.snapshot().generation;
    let entries = c.snapshot().services.len();

    // Its external address and port are the file's DNS service's frontend.
    let clash = service(
        "default/clash",
        [10, 96, 0, 21],
        vec![Ipv4Addr::new(10, 96, 0, 10)],
    );
    let refused = c.add_service(clash, vec![]).unwrap_err();
    assert!(
        matches!(refused, ControlError::ServiceTable(_)),
        "{refused:?}"
    );
    // The served state and snapshot are as they were...
    assert!(!c.state().services.contains_key("default/clash"));
    assert_eq!(c.snapshot().generation, generation);
    assert_eq!(c.snapshot().services.len(), entries);
    // ...and the next change builds on them (the cache forgot the refused one).
    c.delete_service("default/ok").unwrap();
    assert_eq!(c.snapshot().generation, generation + 1);
    drop(c);

    // ...and so is the store: a restart finds no trace of the refused service.
    let stored = Store::open(&dir).unwrap().load().unwrap();
    assert!(
        !stored.services.contains_key("default/clash"),
        "{:?}",
        stored.services.keys().collect::<Vec<_>>()
    );
    assert!(stored.services.is_empty());
    control(&dir);
}
