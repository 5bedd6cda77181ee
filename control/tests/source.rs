//! The Kubernetes source's commit path without an API server: an update
//! of translated objects is applied as one commit, bad objects are skipped
//! with a reason while the rest apply, stored objects survive a bad update
//! and a restart, hand-made objects win over the source's on a clash, and
//! the control API refuses to change the source's objects.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use podswitch_control::api::{self, Api};
use podswitch_control::control::{Control, SourceUpdate};
use podswitch_control::error::ControlError;
use podswitch_control::state::{Endpoint, NodeRecord, Service, ServicePort, Source};
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use podswitch_dataplane::services::Protocol;

const CONFIG: &str = r#"
[node]
name = "node-a"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
[overlay]
vni = 1
[[ports]]
name = "up0"
kind = "afpacket"
"#;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("podswitch-source-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}

fn control(dir: &Path) -> Control {
    let file = NodeConfig::from_toml_str(CONFIG).unwrap();
    let mut c = Control::restore(file, Store::open(dir).unwrap()).unwrap().0;
    c.set_local_node("node-a");
    c
}

fn service(name: &str, ip: [u8; 4], node_port: Option<u32>) -> Service {
    Service {
        name: name.into(),
        cluster_ip: Ipv4Addr::from(ip),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
            target_port: None,
            node_port,
        }],
        session_affinity: "None".into(),
        affinity_timeout_secs: 10_800,
        external_ips: Vec::new(),
        external_traffic_policy: "Cluster".into(),
        internal_traffic_policy: "Cluster".into(),
        source: Source::Kubernetes,
    }
}

fn endpoint(last: u8, node: &str, port: u32) -> Endpoint {
    Endpoint {
        address: Ipv4Addr::new(10, 244, 1, last),
        ready: true,
        terminating: false,
        node: node.into(),
        serving: Some(true),
        ports: [("http".to_string(), port)].into_iter().collect(),
    }
}

fn update(services: Vec<(Service, Vec<Endpoint>)>) -> SourceUpdate {
    SourceUpdate {
        services: services
            .into_iter()
            .map(|(s, e)| (s.name.to_string(), Some((s, e))))
            .collect(),
        ..SourceUpdate::default()
    }
}

fn backends(c: &Control, ip: [u8; 4]) -> Vec<(Ipv4Addr, u16)> {
    let snapshot = c.snapshot();
    let entry = snapshot
        .services
        .lookup_cluster(Protocol::Tcp, Ipv4Addr::from(ip), 80)
        .expect("service in the table");
    entry
        .selectable_backends()
        .iter()
        .map(|b| (b.addr, b.port))
        .collect()
}

#[test]
fn an_update_applies_in_one_generation_and_bad_objects_are_skipped() {
    let dir = temp_dir("skip");
    let mut c = control(&dir.0);
    let before = c.snapshot().generation;
    let mut bad = service("shop/bad", [10, 96, 0, 11], None);
    bad.ports[0].port = 0;
    // Takes web's node port; sorts after web, which keeps it.
    let clash = service("shop/zz-clash", [10, 96, 0, 12], Some(30080));
    let report = c
        .apply_source(update(vec![
            (
                service("shop/web", [10, 96, 0, 10], Some(30080)),
                vec![endpoint(2, "node-a", 8080), endpoint(3, "node-b", 9090)],
            ),
            (bad, vec![]),
            (clash, vec![]),
            // The node's gateway address as a cluster IP.
            (service("shop/on-gateway", [10, 244, 1, 1], None), vec![]),
        ]))
        .unwrap();
    assert_eq!(report.generation, before + 1);
    assert_eq!(report.services_changed, 1);
    let reasons: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason))
        .collect();
    assert!(reasons.contains(&("shop/bad", "invalid")), "{reasons:?}");
    assert!(
        reasons.contains(&("shop/on-gateway", "invalid")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("shop/zz-clash", "conflict")),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 3);
    // Named target ports resolved per endpoint.
    let web = backends(&c, [10, 96, 0, 10]);
    assert!(
        web.contains(&(Ipv4Addr::new(10, 244, 1, 2), 8080)),
        "{web:?}"
    );
    assert!(
        web.contains(&(Ipv4Addr::new(10, 244, 1, 3), 9090)),
        "{web:?}"
    );
    // A bad version of a stored service leaves the stored one running.
    let mut broken = service("shop/web", [10, 96, 0, 10], Some(30080));
    broken.session_affinity = "Sometimes".into();
    let report = c.apply_source(update(vec![(broken, vec![])])).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(backends(&c, [10, 96, 0, 10]).len(), 2);
    drop(c);
    // Stored: a restart (API server down) forwards from it.
    let c = control(&dir.0);
    assert_eq!(backends(&c, [10, 96, 0, 10]).len(), 2);
    assert_eq!(c.state().services["shop/web"].source, Source::Kubernetes);
}

#[test]
fn traffic_policies_pick_local_endpoints() {
    let dir = temp_dir("policy");
    let mut c = control(&dir.0);
    let mut local = service("shop/local", [10, 96, 0, 20], Some(30081));
    local.external_traffic_policy = "Local".into();
    local.external_ips = vec![Ipv4Addr::new(192, 0, 2, 7)];
    let mut internal = service("shop/internal", [10, 96, 0, 21], None);
    internal.internal_traffic_policy = "Local".into();
    let eps = vec![endpoint(2, "node-a", 8080), endpoint(3, "node-b", 8080)];
    c.apply_source(update(vec![(local, eps.clone()), (internal, eps)]))
        .unwrap();
    let snapshot = c.snapshot();
    // Cluster IP of an externalTrafficPolicy: Local service: every endpoint.
    assert_eq!(backends(&c, [10, 96, 0, 20]).len(), 2);
    // Its node port and external address: this node's only.
    let np = snapshot
        .services
        .lookup_node_port(Protocol::Tcp, 30081)
        .unwrap();
    assert_eq!(np.selectable_backends().len(), 1);
    assert_eq!(
        np.selectable_backends()[0].addr,
        Ipv4Addr::new(10, 244, 1, 2)
    );
    assert_eq!(
        backends(&c, [192, 0, 2, 7]),
        vec![(Ipv4Addr::new(10, 244, 1, 2), 8080)]
    );
    // internalTrafficPolicy: Local: the cluster IP goes to this node's only.
    assert_eq!(
        backends(&c, [10, 96, 0, 21]),
        vec![(Ipv4Addr::new(10, 244, 1, 2), 8080)]
    );
}

#[test]
fn terminating_endpoints_take_new_flows_only_when_none_is_ready() {
    let dir = temp_dir("terminating");
    let mut c = control(&dir.0);
    let mut going = endpoint(2, "node-a", 8080);
    going.ready = false;
    going.terminating = true;
    let s = service("shop/web", [10, 96, 0, 10], None);
    c.apply_source(update(vec![(
        s.clone(),
        vec![going.clone(), endpoint(3, "node-b", 8080)],
    )]))
    .unwrap();
    assert_eq!(
        backends(&c, [10, 96, 0, 10]),
        vec![(Ipv4Addr::new(10, 244, 1, 3), 8080)]
    );
    c.apply_source(update(vec![(s.clone(), vec![going.clone()])]))
        .unwrap();
    assert_eq!(
        backends(&c, [10, 96, 0, 10]),
        vec![(Ipv4Addr::new(10, 244, 1, 2), 8080)]
    );
    // Not serving any more: nothing takes new flows (REJECT).
    going.serving = Some(false);
    c.apply_source(update(vec![(s, vec![going])])).unwrap();
    assert!(backends(&c, [10, 96, 0, 10]).is_empty());
}

#[test]
fn hand_made_objects_win_and_the_sources_objects_are_read_only() {
    let dir = temp_dir("owner");
    let mut c = control(&dir.0);
    let mut hand = service("shop/hand", [10, 96, 0, 30], None);
    hand.source = Source::Api;
    c.add_service(hand, vec![]).unwrap();
    let report = c
        .apply_source(update(vec![
            (service("shop/hand", [10, 96, 0, 31], None), vec![]),
            (
                service("shop/web", [10, 96, 0, 10], None),
                vec![endpoint(2, "node-a", 8080)],
            ),
        ]))
        .unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].reason, "name_taken");
    assert_eq!(
        c.state().services["shop/hand"].cluster_ip,
        Ipv4Addr::new(10, 96, 0, 30)
    );
    let refused = c.delete_service("shop/web").unwrap_err();
    assert!(
        matches!(&refused, ControlError::Managed { kind: "service", name, .. } if name == "shop/web"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("Kubernetes"), "{refused}");
    assert!(matches!(
        c.set_endpoints("shop/web", vec![]).unwrap_err(),
        ControlError::Managed { .. }
    ));
    // The source removes its own.
    let mut gone = SourceUpdate::default();
    gone.services.insert("shop/web".into(), None);
    gone.services.insert("shop/hand".into(), None);
    let report = c.apply_source(gone).unwrap();
    assert_eq!(report.services_removed, 1);
    assert!(!c.state().services.contains_key("shop/web"));
    assert!(c.state().services.contains_key("shop/hand"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_keeps_the_sources_objects_and_refuses_to_name_them() {
    let dir = temp_dir("apply");
    let mut c = control(&dir.0);
    c.apply_source(update(vec![(
        service("shop/web", [10, 96, 0, 10], None),
        vec![endpoint(2, "node-a", 8080)],
    )]))
    .unwrap();
    let api = Api::new(c);
    let app = api::router(std::sync::Arc::clone(&api));
    use tower::ServiceExt;
    let put = |body: serde_json::Value| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::builder()
                .method("PUT")
                .uri("/v1/state")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            app.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(put(serde_json::json!({"services": []})).await, 200);
    assert!(api.control().state().services.contains_key("shop/web"));
    let named = serde_json::json!({"services": [{"name": "shop/web", "cluster_ip": "10.96.0.99", "ports": [{"port": 80}]}]});
    assert_eq!(put(named).await, 409);
}

#[test]
fn nodes_follow_the_source_and_the_pod_subnet_moves_the_gateway() {
    let dir = temp_dir("nodes");
    let mut c = control(&dir.0);
    let peer = |name: &str, ip: [u8; 4], cidr: &str| NodeRecord {
        name: name.into(),
        node_ip: Ipv4Addr::from(ip),
        pod_cidr: cidr.parse().unwrap(),
        vni: 1,
        vtep_mac: None,
        source: Source::Kubernetes,
    };
    let report = c
        .apply_source(SourceUpdate {
            nodes: Some(vec![
                peer("node-b", [192, 168, 100, 2], "10.244.2.0/24"),
                // Overlaps this node's pod subnet: skipped.
                peer("node-x", [192, 168, 100, 9], "10.244.1.0/24"),
            ]),
            pod_subnet: Some("10.244.1.0/24".parse().unwrap()),
            ..SourceUpdate::default()
        })
        .unwrap();
    assert!(report.nodes_changed);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    let tunnels = |c: &Control| {
        c.snapshot()
            .overlay
            .as_ref()
            .map(|o| o.tunnels.tunnels().len())
            .unwrap_or(0)
    };
    assert_eq!(tunnels(&c), 1);
    // The same again changes nothing.
    let generation = c.snapshot().generation;
    c.apply_source(SourceUpdate {
        nodes: Some(vec![peer("node-b", [192, 168, 100, 2], "10.244.2.0/24")]),
        ..SourceUpdate::default()
    })
    .unwrap();
    assert_eq!(c.snapshot().generation, generation);
    assert!(matches!(
        c.delete_node("node-b").unwrap_err(),
        ControlError::Managed { kind: "node", .. }
    ));
    // A Node deleted removes its peer.
    c.apply_source(SourceUpdate {
        nodes: Some(vec![]),
        ..SourceUpdate::default()
    })
    .unwrap();
    assert_eq!(tunnels(&c), 0);
    // This node's pod CIDR becomes the pod subnet.
    c.apply_source(SourceUpdate {
        pod_subnet: Some("10.244.7.0/24".parse().unwrap()),
        ..SourceUpdate::default()
    })
    .unwrap();
    assert_eq!(c.snapshot().gateway.address.to_string(), "10.244.7.1/24");
}

#[test]
fn a_node_the_dataplane_refuses_is_skipped_and_the_rest_applies() {
    let dir = temp_dir("bad-node");
    let mut c = control(&dir.0);
    let mut u = update(vec![(
        service("shop/web", [10, 96, 0, 10], None),
        vec![endpoint(2, "node-a", 8080)],
    )]);
    let peer = |name: &str, ip: [u8; 4], cidr: &str| NodeRecord {
        name: name.into(),
        node_ip: Ipv4Addr::from(ip),
        pod_cidr: cidr.parse().unwrap(),
        vni: 1,
        vtep_mac: None,
        source: Source::Kubernetes,
    };
    u.nodes = Some(vec![
        // Not on the uplink's subnet: the overlay cannot reach it.
        peer("node-a2", [172, 16, 0, 2], "10.244.3.0/24"),
        peer("node-b", [192, 168, 100, 2], "10.244.2.0/24"),
    ]);
    let report = c.apply_source(u).unwrap();
    assert!(report.nodes_changed);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(
        (report.skipped[0].kind, report.skipped[0].name.as_str()),
        ("node", "node-a2")
    );
    assert!(
        report.skipped[0].message.contains("uplink"),
        "{:?}",
        report.skipped
    );
    assert_eq!(backends(&c, [10, 96, 0, 10]).len(), 1);
    assert_eq!(c.state().nodes.keys().collect::<Vec<_>>(), ["node-b"]);
}

#[test]
fn flags_win_over_the_kubernetes_section_which_turns_the_source_on() {
    use podswitch_control::kubernetes::KubernetesRun;
    use std::time::Duration;
    let with = |section: &str| NodeConfig::from_toml_str(&format!("{CONFIG}\n{section}")).unwrap();
    let snapshot = podswitch_dataplane::config::Snapshot::build(&with(""), 1).unwrap();
    let off = KubernetesRun::default();
    assert!(off.resolve(None, &snapshot).is_none());
    let file = with("[kubernetes]\nkubeconfig = \"/k\"\nmin_sync_interval_ms = 80\n");
    let on = off.resolve(file.kubernetes.as_ref(), &snapshot).unwrap();
    assert_eq!(on.node_name, "node-a");
    assert_eq!(on.kubeconfig, Some("/k".into()));
    assert_eq!(on.min_sync_interval, Duration::from_millis(80));
    let flags = KubernetesRun {
        enabled: false,
        kubeconfig: Some("/flag".into()),
        node_name: Some("from-env".into()),
        min_sync_interval: Some(Duration::from_millis(5)),
    };
    let both = flags.resolve(file.kubernetes.as_ref(), &snapshot).unwrap();
    assert_eq!(
        (
            both.kubeconfig,
            both.node_name.as_str(),
            both.min_sync_interval
        ),
        (Some("/flag".into()), "from-env", Duration::from_millis(5))
    );
    let disabled = with("[kubernetes]\nenabled = false\n");
    assert!(
        flags
            .resolve(disabled.kubernetes.as_ref(), &snapshot)
            .is_none()
    );
    let forced = KubernetesRun {
        enabled: true,
        ..KubernetesRun::default()
    };
    let defaults = forced.resolve(None, &snapshot).unwrap();
    assert_eq!(defaults.min_sync_interval, Duration::from_millis(50));
    assert_eq!(defaults.kubeconfig, None);
}

#[test]
fn a_skipped_service_keeps_its_frontends() {
    let dir = temp_dir("keeps");
    let mut c = control(&dir.0);
    let mut hand = service("shop/hand", [10, 96, 0, 30], None);
    hand.source = Source::Api;
    c.add_service(hand, vec![]).unwrap();
    c.apply_source(update(vec![(
        service("shop/web", [10, 96, 0, 10], None),
        vec![],
    )]))
    .unwrap();
    let mut broken = service("shop/web", [10, 96, 0, 10], None);
    broken.session_affinity = "Sometimes".into();
    // In one update: the hand-made name (refused), web broken (refused), and
    // two new services on their addresses: both clash with what stays.
    let report = c
        .apply_source(update(vec![
            (service("shop/hand", [10, 96, 0, 31], None), vec![]),
            (broken, vec![]),
            (service("shop/x-on-hand", [10, 96, 0, 30], None), vec![]),
            (service("shop/x-on-web", [10, 96, 0, 10], None), vec![]),
        ]))
        .unwrap();
    let mut reasons: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("shop/hand", "name_taken"),
            ("shop/web", "invalid"),
            ("shop/x-on-hand", "conflict"),
            ("shop/x-on-web", "conflict"),
        ]
    );
    assert_eq!(c.state().services.len(), 2);
}
