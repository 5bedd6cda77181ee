use k8s_openapi::api::core::v1::{Node, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;

fn service(v: serde_json::Value) -> KubeService {
    serde_json::from_value(v).unwrap()
}
fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}
fn node(v: serde_json::Value) -> Node {
    serde_json::from_value(v).unwrap()
}

fn web() -> serde_json::Value {
    json!({
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00::10"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http-alt", "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
            ],
            "externalIPs": ["192.0.2.7"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "externalTrafficPolicy": "Local",
        }
    })
}

fn web_slice(name: &str, endpoints: serde_json::Value, http_port: u16) -> EndpointSlice {
    slice(json!({
        "metadata": {"namespace": "shop", "name": name, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": http_port, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints,
    }))
}

fn translated(t: Result<Translation, Skip>) -> (Service, Vec<Endpoint>, Vec<Skip>) {
    match t.unwrap() {
        Translation::Service {
            service,
            endpoints,
            notes,
        } => (service, endpoints, notes),
        other => panic!("not a service: {other:?}"),
    }
}

#[test]
fn a_node_port_service_with_its_slices() {
    let a = web_slice(
        "web-a",
        json!([
            {"addresses": ["10.244.1.2"], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "n1"},
            {"addresses": ["10.244.2.3"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "n2"},
        ]),
        8080,
    );
    // The same named port resolves to another number in another slice.
    let b = web_slice(
        "web-b",
        json!([{"addresses": ["10.244.2.4"], "nodeName": "n2"}]),
        9090,
    );
    let (s, eps, notes) = translated(translate_service(&service(web()), &[&a, &b]));
    assert_eq!(s.name, "shop/web");
    assert_eq!(s.cluster_ip, Ipv4Addr::new(10, 96, 0, 10));
    assert_eq!(s.external_ips, vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(s.ports[0].node_port, Some(30080));
    assert_eq!(s.ports[0].target_port, None);
    assert_eq!(s.ports[1].target_port, Some(5353));
    assert_eq!(
        (s.session_affinity.as_str(), s.affinity_timeout_secs),
        ("ClientIP", 60)
    );
    assert_eq!(s.external_traffic_policy, "Local");
    assert_eq!(s.internal_traffic_policy, "Cluster");
    assert_eq!(s.source, Source::Kubernetes);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].reason, "ipv6");
    assert_eq!(eps.len(), 3);
    assert_eq!(
        (eps[0].ready, eps[0].node.as_str(), eps[0].ports["http"]),
        (true, "n1", 8080)
    );
    assert!(!eps[1].ready && eps[1].terminating && eps[1].serving == Some(true));
    // Unset conditions are ready and serving.
    assert!(eps[2].ready && eps[2].serving == Some(true));
    assert_eq!(eps[2].ports["http"], 9090);
}

#[test]
fn services_podswitch_does_not_proxy_are_ignored() {
    let mut headless = web();
    headless["spec"]["clusterIP"] = json!("None");
    headless["spec"]["clusterIPs"] = json!(["None"]);
    let mut external_name = web();
    external_name["spec"]["type"] = json!("ExternalName");
    let mut other_proxy = web();
    other_proxy["metadata"]["labels"] =
        json!({"service.kubernetes.io/service-proxy-name": "other"});
    let mut v6 = web();
    v6["spec"]["clusterIPs"] = json!(["fd00::10"]);
    for (v, why) in [
        (headless, "headless"),
        (external_name, "external_name"),
        (other_proxy, "service_proxy_name"),
        (v6, "ipv6_only"),
    ] {
        assert_eq!(
            translate_service(&service(v), &[]),
            Ok(Translation::Ignored(why))
        );
    }
}

#[test]
fn bad_services_are_skipped_with_a_reason() {
    let mut bad_ip = web();
    bad_ip["spec"]["clusterIPs"] = json!(["10.96.0.300"]);
    let e = translate_service(&service(bad_ip), &[]).unwrap_err();
    assert_eq!(e.reason, "invalid");
    assert!(e.message.contains("10.96.0.300"), "{}", e.message);
    let mut unknown = web();
    unknown["spec"]["ports"] = json!([{"port": 80, "protocol": "QUIC"}]);
    let e = translate_service(&service(unknown), &[]).unwrap_err();
    assert_eq!(e.reason, "no_ports");
    let mut timeout = web();
    timeout["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] = json!(0);
    assert_eq!(
        translate_service(&service(timeout), &[])
            .unwrap_err()
            .reason,
        "invalid"
    );
}

#[test]
fn load_balancer_ingress_ips_are_frontends_and_cluster_ip_services_have_no_node_ports() {
    let mut lb = web();
    lb["spec"]["type"] = json!("LoadBalancer");
    lb["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "lb.example"}]}});
    let (s, _, _) = translated(translate_service(&service(lb), &[]));
    assert_eq!(
        s.external_ips,
        vec![Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(198, 51, 100, 1)]
    );
    let mut plain = web();
    plain["spec"]["type"] = json!("ClusterIP");
    let (s, _, _) = translated(translate_service(&service(plain), &[]));
    assert!(s.ports.iter().all(|p| p.node_port.is_none()));
}

#[test]
fn an_address_in_two_slices_is_kept_once_ready_first() {
    let a = web_slice(
        "a",
        json!([{"addresses": ["10.244.1.2"], "conditions": {"ready": false, "serving": false}}]),
        8080,
    );
    let b = web_slice(
        "b",
        json!([{"addresses": ["10.244.1.2"], "conditions": {"ready": true}}, {"addresses": ["not-an-ip"]}]),
        8080,
    );
    let (_, eps, notes) = translated(translate_service(&service(web()), &[&a, &b]));
    assert_eq!(eps.len(), 1);
    assert!(eps[0].ready);
    assert!(notes.iter().any(|n| n.message.contains("not-an-ip")));
}

#[test]
fn nodes_become_peers_and_this_node_gives_the_pod_subnet() {
    let n = |name: &str, cidr: Option<&str>, ip: Option<&str>, mac: Option<&str>| {
        let mut v = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": []}});
        if let Some(c) = cidr {
            v["spec"]["podCIDRs"] = json!([c]);
        }
        if let Some(ip) = ip {
            v["status"]["addresses"] = json!([{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]);
        }
        if let Some(mac) = mac {
            v["metadata"]["annotations"] = json!({ VTEP_MAC_ANNOTATION: mac });
        }
        node(v)
    };
    let nodes = [
        n("self", Some("10.244.1.0/24"), Some("192.168.100.1"), None),
        n(
            "b",
            Some("10.244.2.0/24"),
            Some("192.168.100.2"),
            Some("02:56:c0:a8:64:02"),
        ),
        n("c", None, Some("192.168.100.3"), None),
        n("d", Some("10.244.4.0/24"), None, None),
        n(
            "e",
            Some("10.244.5.0/24"),
            Some("192.168.100.5"),
            Some("zz"),
        ),
    ];
    let t = translate_nodes(&nodes, "self", 7);
    assert_eq!(t.pod_subnet, Some("10.244.1.0/24".parse().unwrap()));
    assert_eq!(t.peers.len(), 1);
    assert_eq!(t.peers[0].name, "b");
    assert_eq!(t.peers[0].node_ip, Ipv4Addr::new(192, 168, 100, 2));
    assert_eq!(t.peers[0].vni, 7);
    assert_eq!(
        t.peers[0].vtep_mac,
        Some("02:56:c0:a8:64:02".parse().unwrap())
    );
    let reasons: Vec<&str> = t.skipped.iter().map(|(_, s)| s.reason).collect();
    assert_eq!(reasons, ["incomplete", "incomplete", "invalid"]);
}
