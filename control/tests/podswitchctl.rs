//! `podswitchctl` end to end against a scripted API server: the exact
//! requests each subcommand sends, and what it prints and exits with.

use std::io::Write;
use std::process::{Command, Stdio};

use podswitch_control::fake_api::{FakeApi, RecordedRequest, Reply};
use serde_json::json;

/// What one run of the binary did.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn podswitchctl_with(socket: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podswitchctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("PODSWITCH_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podswitchctl");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for podswitchctl");
    Run {
        status: output.status.code().expect("exit status"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn podswitchctl(api: &FakeApi, args: &[&str]) -> Run {
    podswitchctl_with(api.socket_path(), args, None)
}

/// Runs `args` and checks it succeeded; returns stdout.
fn ok(api: &FakeApi, args: &[&str]) -> String {
    let run = podswitchctl(api, args);
    assert_eq!(
        (run.status, run.stderr.as_str()),
        (0, ""),
        "podswitchctl {args:?}"
    );
    run.stdout
}

/// The only request the server got.
fn only_request(api: &FakeApi) -> RecordedRequest {
    let mut requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.remove(0)
}

fn assert_request(request: &RecordedRequest, method: &str, path: &str) {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        (method, path)
    );
    assert_eq!(request.header("host"), Some("podswitchd"));
    assert_eq!(request.header("connection"), Some("close"));
}

fn assert_json_request(
    request: &RecordedRequest,
    method: &str,
    path: &str,
    body: serde_json::Value,
) {
    assert_request(request, method, path);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.json(), body);
}

#[test]
fn port_add_sends_every_given_field() {
    let api = FakeApi::start(vec![(
        "POST /v1/ports",
        Reply::json(201, r#"{"name":"pod-a"}"#),
    )]);
    let stdout = ok(
        &api,
        &[
            "port",
            "add",
            "pod-a",
            "--kind",
            "tap",
            "--ifname",
            "ps-pod-a",
            "--netns",
            "/var/run/netns/pod-a",
            "--pod-ifname",
            "eth1",
            "--mac",
            "02:00:0a:f4:01:02",
            "--ip",
            "10.244.1.2",
            "--ip",
            "10.244.1.3,10.244.1.4",
            "--mtu",
            "1400",
            "--no-offload",
        ],
    );
    assert_eq!(stdout, "port/pod-a created\n");
    assert_json_request(
        &only_request(&api),
        "POST",
        "/v1/ports",
        json!({
            "name": "pod-a", "kind": "tap", "ifname": "ps-pod-a",
            "netns": "/var/run/netns/pod-a", "pod_ifname": "eth1",
            "mac": "02:00:0a:f4:01:02", "ips": ["10.244.1.2", "10.244.1.3", "10.244.1.4"],
            "mtu": 1400, "offload": false,
        }),
    );
}

#[test]
fn port_add_sends_only_what_was_given() {
    let api = FakeApi::start(vec![("POST /v1/ports", Reply::json(201, "{}"))]);
    ok(
        &api,
        &["port", "add", "up1", "--kind", "afpacket", "--rx-ring"],
    );
    assert_json_request(
        &only_request(&api),
        "POST",
        "/v1/ports",
        json!({"name": "up1", "kind": "afpacket", "rx_ring": true}),
    );
}

#[test]
fn port_del_and_show_encode_the_name() {
    let api = FakeApi::start(vec![
        ("DELETE /v1/ports/pod-a", Reply::empty(204)),
        (
            "GET /v1/ports/odd%20name%2Fx",
            Reply::json(200, r#"{"name": "odd name/x"}"#),
        ),
    ]);
    assert_eq!(ok(&api, &["port", "del", "pod-a"]), "port/pod-a deleted\n");
    assert_eq!(
        ok(&api, &["port", "show", "odd name/x"]),
        "name:  odd name/x\n"
    );
    let requests = api.requests();
    assert_request(&requests[0], "DELETE", "/v1/ports/pod-a");
    assert_eq!(requests[0].header("content-length"), None);
    assert!(requests[0].body.is_empty());
}

#[test]
fn service_add_sends_ports_and_affinity() {
    let api = FakeApi::start(vec![("POST /v1/services", Reply::json(201, "{}"))]);
    let stdout = ok(
        &api,
        &[
            "service",
            "add",
            "default/web",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "http:80:8080/TCP,nodeport=30080",
            "--port",
            "dns:53/udp",
            "--port",
            "9090",
            "--affinity",
            "clientip",
            "--affinity-timeout",
            "600",
        ],
    );
    assert_eq!(stdout, "service/default/web created\n");
    assert_json_request(
        &only_request(&api),
        "POST",
        "/v1/services",
        json!({
            "name": "default/web", "cluster_ip": "10.96.0.10",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30080},
                {"name": "dns", "protocol": "UDP", "port": 53, "target_port": 53},
                {"protocol": "TCP", "port": 9090, "target_port": 9090},
            ],
            "session_affinity": "ClientIP", "affinity_timeout_secs": 600,
        }),
    );
}

#[test]
fn service_add_refuses_a_bad_port_before_sending() {
    let api = FakeApi::start(vec![]);
    let run = podswitchctl(
        &api,
        &[
            "service",
            "add",
            "default/web",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "80/ICMP",
        ],
    );
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains(
            "protocol \"ICMP\" is not TCP, UDP or SCTP; expected [NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]"
        ),
        "{}",
        run.stderr
    );
    let run = podswitchctl(&api, &["service", "show", "web"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("expected NAMESPACE/NAME"),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty());
}

#[test]
fn malformed_addresses_are_refused_before_any_request() {
    let api = FakeApi::start(vec![]);
    let node = "node add b --node-ip 192.168.100.2";
    let cases = [
        (
            "port add pod-a --kind tap --mac 02:00:0a:f4:01",
            "02:00:0a:f4:01",
        ),
        (
            "port add pod-a --kind tap --ip 10.244.1.2,10.244.1.300",
            "10.244.1.300",
        ),
        (
            "service add default/web --cluster-ip 10.96.0.x --port 80",
            "10.96.0.x",
        ),
        ("endpoint add default/web 10.244.1", "10.244.1"),
        ("endpoint del default/web 10.244.1.5.6", "10.244.1.5.6"),
        ("endpoint set default/web 10.244.1.5 banana", "banana"),
        ("route add 10.244.2.0/33 via 192.168.100.2", "10.244.2.0/33"),
        ("route add 10.244.2.0/24 via 192.168.100.", "192.168.100."),
        ("route del 10.244.2.0", "10.244.2.0"),
        (&format!("{node} --pod-cidr 10.244.2.0"), "10.244.2.0"),
        (
            "node add b --node-ip 192.168.1000.2 --pod-cidr 10.244.2.0/24",
            "192.168.1000.2",
        ),
        (
            &format!("{node} --pod-cidr 10.244.2.0/24 --vtep-mac 02:56:c0"),
            "02:56:c0",
        ),
    ];
    for (line, bad) in cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let run = podswitchctl(&api, &args);
        assert_eq!(
            (run.status, run.stdout.as_str()),
            (2, ""),
            "{line}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("'{bad}'")),
            "{line}: the error shows the value: {}",
            run.stderr
        );
    }
    assert!(api.requests().is_empty(), "{:#?}", api.requests());
}

#[test]
fn service_list_and_show() {
    let services = r#"{"services": [
        {"name": "default/web", "cluster_ip": "10.96.0.10",
         "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30080},
                   {"name": "metrics", "protocol": "TCP", "port": 9090, "target_port": 9090}],
         "session_affinity": "None", "affinity_timeout_secs": 10800,
         "endpoints": [{"address": "10.244.1.5", "ready": true, "terminating": false, "node": "node-a"},
                       {"address": "10.244.2.7", "ready": false, "terminating": true, "node": "node-b"}]},
        {"name": "kube-system/dns", "cluster_ip": "10.96.0.53",
         "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "target_port": 53}],
         "session_affinity": "ClientIP", "affinity_timeout_secs": 60, "endpoints": []}
    ]}"#;
    let web = r#"{"name": "default/web", "cluster_ip": "10.96.0.10",
         "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30080}],
         "session_affinity": "None", "affinity_timeout_secs": 10800,
         "endpoints": [{"address": "10.244.1.5", "ready": true, "terminating": false, "node": "node-a"}]}"#;
    let api = FakeApi::start(vec![
        ("GET /v1/services", Reply::json(200, services)),
        ("GET /v1/services/default/web", Reply::json(200, web)),
    ]);
    assert_eq!(
        ok(&api, &["svc", "list"]),
        "\
NAME              CLUSTER-IP   PORT(S)                 AFFINITY   READY
default/web       10.96.0.10   80:30080/TCP,9090/TCP   None       1/2
kube-system/dns   10.96.0.53   53/UDP                  ClientIP   0/0
"
    );
    assert_eq!(
        ok(&api, &["service", "show", "default/web"]),
        "\
name:                   default/web
cluster_ip:             10.96.0.10
session_affinity:       None
affinity_timeout_secs:  10800
ports:
  NAME   PROTOCOL   PORT   TARGET-PORT   NODE-PORT
  http   TCP        80     8080          30080
endpoints:
  ADDRESS      READY   TERMINATING   NODE
  10.244.1.5   true    false         node-a
"
    );
}

#[test]
fn endpoint_add_set_del_and_list() {
    let api = FakeApi::start(vec![
        (
            "POST /v1/services/default/web/endpoints",
            Reply::json(201, "{}"),
        ),
        (
            "PUT /v1/services/default/web/endpoints",
            Reply::json(200, r#"{"endpoints": []}"#),
        ),
        (
            "DELETE /v1/services/default/web/endpoints/10.244.1.5",
            Reply::empty(204),
        ),
        (
            "GET /v1/services/default/web/endpoints",
            Reply::json(
                200,
                r#"{"endpoints": [{"address": "10.244.1.6", "ready": true, "terminating": false}]}"#,
            ),
        ),
    ]);
    assert_eq!(
        ok(
            &api,
            &[
                "endpoint",
                "add",
                "default/web",
                "10.244.1.5",
                "--not-ready",
                "--terminating",
                "--node",
                "node-a"
            ]
        ),
        "endpoint 10.244.1.5 added to service/default/web\n"
    );
    assert_eq!(
        ok(
            &api,
            &["ep", "set", "default/web", "10.244.1.6", "10.244.1.7"]
        ),
        "service/default/web endpoints set: 10.244.1.6, 10.244.1.7\n"
    );
    assert_eq!(
        ok(&api, &["endpoint", "del", "default/web", "10.244.1.5"]),
        "endpoint 10.244.1.5 removed from service/default/web\n"
    );
    assert_eq!(
        ok(&api, &["endpoint", "list", "default/web"]),
        "ADDRESS      READY   TERMINATING   NODE\n10.244.1.6   true    false         <none>\n"
    );
    let requests = api.requests();
    assert_json_request(
        &requests[0],
        "POST",
        "/v1/services/default/web/endpoints",
        json!({"address": "10.244.1.5", "ready": false, "terminating": true, "node": "node-a"}),
    );
    assert_json_request(
        &requests[1],
        "PUT",
        "/v1/services/default/web/endpoints",
        json!({"endpoints": [
            {"address": "10.244.1.6", "ready": true, "terminating": false},
            {"address": "10.244.1.7", "ready": true, "terminating": false},
        ]}),
    );
    assert_request(
        &requests[2],
        "DELETE",
        "/v1/services/default/web/endpoints/10.244.1.5",
    );
    assert_request(&requests[3], "GET", "/v1/services/default/web/endpoints");
}

#[test]
fn route_add_list_and_del_with_the_prefix_slash() {
    let routes = r#"{"routes": [
        {"prefix": "10.244.1.0/24", "via": null, "source": "connected"},
        {"prefix": "10.244.2.0/24", "via": "192.168.100.2", "source": "api"}
    ]}"#;
    let api = FakeApi::start(vec![
        (
            "POST /v1/routes",
            Reply::json(
                201,
                r#"{"prefix": "10.244.2.0/24", "via": "192.168.100.2"}"#,
            ),
        ),
        ("GET /v1/routes", Reply::json(200, routes)),
        ("DELETE /v1/routes/10.244.2.0/24", Reply::empty(204)),
    ]);
    assert_eq!(
        ok(
            &api,
            &["route", "add", "10.244.2.0/24", "via", "192.168.100.2"]
        ),
        "route 10.244.2.0/24 via 192.168.100.2 added\n"
    );
    assert_eq!(
        ok(&api, &["route", "list"]),
        "\
PREFIX          VIA             SOURCE
10.244.1.0/24   <none>          connected
10.244.2.0/24   192.168.100.2   api
"
    );
    assert_eq!(
        ok(&api, &["route", "del", "10.244.2.0/24"]),
        "route 10.244.2.0/24 deleted\n"
    );
    let requests = api.requests();
    assert_json_request(
        &requests[0],
        "POST",
        "/v1/routes",
        json!({"prefix": "10.244.2.0/24", "via": "192.168.100.2"}),
    );
    assert_request(&requests[2], "DELETE", "/v1/routes/10.244.2.0/24");

    let run = podswitchctl(
        &api,
        &["route", "add", "10.244.3.0/24", "dev", "192.168.100.3"],
    );
    assert_eq!(
        run.status, 2,
        "only `via` is accepted between prefix and next hop"
    );
    assert_eq!(api.requests().len(), 3);
}

#[test]
fn node_add_show_and_mirror_add() {
    let api = FakeApi::start(vec![
        ("POST /v1/nodes", Reply::json(201, "{}")),
        (
            "GET /v1/node",
            Reply::json(
                200,
                r#"{"name": "node-a", "gateway": "10.244.1.1/24", "gateway_mac": "02:00:0a:f4:01:01", "uplink": null, "mac_aging_secs": 300}"#,
            ),
        ),
        (
            "GET /v1/nodes/node-b",
            Reply::json(
                200,
                r#"{"name": "node-b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24", "vni": 1}"#,
            ),
        ),
        ("POST /v1/mirrors", Reply::json(201, "{}")),
    ]);
    assert_eq!(
        ok(
            &api,
            &[
                "node",
                "add",
                "node-b",
                "--node-ip",
                "192.168.100.2",
                "--pod-cidr",
                "10.244.2.0/24",
                "--vni",
                "1"
            ]
        ),
        "node/node-b created\n"
    );
    assert_eq!(
        ok(&api, &["node", "show"]),
        "\
name:            node-a
gateway:         10.244.1.1/24
gateway_mac:     02:00:0a:f4:01:01
uplink:          <none>
mac_aging_secs:  300
"
    );
    assert_eq!(
        ok(&api, &["node", "show", "node-b"]),
        "name:      node-b\nnode_ip:   192.168.100.2\npod_cidr:  10.244.2.0/24\nvni:       1\n"
    );
    assert_eq!(
        ok(
            &api,
            &[
                "mirror",
                "add",
                "m1",
                "--port",
                "pod-a,pod-b",
                "--direction",
                "both",
                "--stage",
                "pre-nat",
                "--filter",
                "tcp port 80",
                "--iface",
                "psmirror0"
            ]
        ),
        "mirror/m1 created\n"
    );
    let requests = api.requests();
    assert_json_request(
        &requests[0],
        "POST",
        "/v1/nodes",
        json!({"name": "node-b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24", "vni": 1}),
    );
    assert_json_request(
        &requests[3],
        "POST",
        "/v1/mirrors",
        json!({"name": "m1", "ports": ["pod-a", "pod-b"], "direction": "both", "stage": "pre-nat",
               "filter": "tcp port 80", "iface": "psmirror0"}),
    );
}

const APPLIED: &str = r#"{"generation": 7, "changed": {
    "services": {"added": 1, "updated": 0, "removed": 2},
    "endpoints": {"added": 3, "updated": 0, "removed": 0},
    "routes": {"added": 0, "updated": 0, "removed": 0},
    "nodes": {"added": 0, "updated": 1, "removed": 0}}}"#;

#[test]
fn apply_sends_toml_as_toml() {
    let api = FakeApi::start(vec![("PUT /v1/state", Reply::json(200, APPLIED))]);
    let document = "[[routes]]\nprefix = \"10.244.2.0/24\"\nvia = \"192.168.100.2\"\n";
    let file = api.dir().join("state.toml");
    std::fs::write(&file, document).unwrap();
    let stdout = ok(&api, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        stdout,
        format!(
            "applied {}: generation 7\n\
             RESOURCE    ADDED   UPDATED   REMOVED\n\
             services    1       0         2\n\
             endpoints   3       0         0\n\
             routes      0       0         0\n\
             nodes       0       1         0\n",
            file.display()
        )
    );
    let request = only_request(&api);
    assert_request(&request, "PUT", "/v1/state");
    assert_eq!(request.header("content-type"), Some("application/toml"));
    assert_eq!(
        request.header("content-length"),
        Some(document.len().to_string().as_str())
    );
    assert_eq!(request.body, document.as_bytes());
}

#[test]
fn apply_sends_json_from_a_file_or_stdin() {
    let unchanged =
        r#"{"generation": 8, "changed": {"services": {"added": 0, "updated": 0, "removed": 0}}}"#;
    let api = FakeApi::start(vec![("PUT /v1/state", Reply::json(200, unchanged))]);
    let document = r#"{"routes": []}"#;
    let file = api.dir().join("state.JSON");
    std::fs::write(&file, document).unwrap();
    assert_eq!(
        ok(&api, &["apply", "-f", file.to_str().unwrap()]),
        "no changes (generation 8)\n"
    );
    let run = podswitchctl_with(api.socket_path(), &["apply", "-f", "-"], Some(document));
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "no changes (generation 8)\n")
    );
    for request in api.requests() {
        assert_request(&request, "PUT", "/v1/state");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.body, document.as_bytes());
    }
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn apply_refuses_an_unknown_format() {
    let api = FakeApi::start(vec![]);
    let file = api.dir().join("state.yaml");
    std::fs::write(&file, "routes: []\n").unwrap();
    let run = podswitchctl(&api, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stderr,
        format!(
            "Error: apply -f {}: cannot tell JSON from TOML; name the file *.json or *.toml, or pipe JSON to -f -\n",
            file.display()
        )
    );
    let run = podswitchctl(&api, &["apply", "-f", "/nonexistent/state.json"]);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .starts_with("Error: read /nonexistent/state.json: "),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty());
}

const PORTS: &str = r#"{"ports": [
    {"name": "pod-a", "kind": "tap", "ifname": "ps-pod-a", "netns": "/var/run/netns/pod-a",
     "pod_ifname": "eth0", "mac": "02:00:0a:f4:01:02", "ips": ["10.244.1.2", "10.244.1.3"],
     "mtu": 1500, "offload": true, "rx_ring": false, "id": 0, "source": "config", "state": "up",
     "counters": {"rx_packets": 12, "rx_bytes": 1400, "tx_packets": 10, "tx_bytes": 1200}},
    {"name": "up0", "kind": "afpacket", "id": 1, "source": "api", "state": "down",
     "down_reason": "port up0: AF_PACKET socket 0 on up0: no interface up0",
     "counters": {"rx_packets": 1234567, "rx_bytes": 99, "tx_packets": 0, "tx_bytes": 0}}
]}"#;

#[test]
fn port_list_table() {
    let api = FakeApi::start(vec![("GET /v1/ports", Reply::json(200, PORTS))]);
    assert_eq!(
        ok(&api, &["port", "list"]),
        "\
NAME    KIND       IFNAME     MAC                 IPS                     SOURCE   STATE   RX-PACKETS   TX-PACKETS
pod-a   tap        ps-pod-a   02:00:0a:f4:01:02   10.244.1.2,10.244.1.3   config   up      12           10
up0     afpacket   <none>     <none>              <none>                  api      down    1234567      0
"
    );
    assert_request(&only_request(&api), "GET", "/v1/ports");
}

#[test]
fn empty_list_says_so() {
    let api = FakeApi::start(vec![(
        "GET /v1/mirrors",
        Reply::json(200, r#"{"mirrors": []}"#),
    )]);
    assert_eq!(ok(&api, &["mirror", "list"]), "no mirrors\n");
}

#[test]
fn json_output_is_the_servers_json_pretty_printed_in_its_order() {
    let api = FakeApi::start(vec![(
        "GET /v1/ports",
        Reply::json(
            200,
            r#"{"ports":[{"name":"up0","kind":"afpacket","ips":[],"counters":{"rx_packets":1}}]}"#,
        ),
    )]);
    assert_eq!(
        ok(&api, &["-o", "json", "port", "list"]),
        r#"{
  "ports": [
    {
      "name": "up0",
      "kind": "afpacket",
      "ips": [],
      "counters": {
        "rx_packets": 1
      }
    }
  ]
}
"#
    );
    // The global flag also goes after the subcommand.
    assert_eq!(
        ok(&api, &["port", "list", "--output", "json"]),
        ok(&api, &["-o", "json", "port", "list"])
    );
}

const STATS: &str = r#"{"generation": 7, "workers": 2,
    "ports": [
        {"name": "pod-a", "rx_packets": 12, "rx_bytes": 1400, "tx_packets": 10, "tx_bytes": 1200,
         "rx_errors": 0, "rx_dropped": 0},
        {"name": "up0", "rx_packets": 1234567, "rx_bytes": 1500000000, "tx_packets": 0, "tx_bytes": 0,
         "rx_errors": 2, "rx_dropped": 4096}
    ],
    "drops": {"bad_checksum": 0, "spoofed_src_mac": 3, "ttl_exceeded": 1, "no_route": 0},
    "events": {"arp_reply": 5, "gso_frames": 0},
    "per_worker": [{"drops": {"spoofed_src_mac": 3}, "events": {"arp_reply": 5}}, {"drops": {}, "events": {}}]}"#;

#[test]
fn stats_table_shows_ports_and_only_non_zero_counters() {
    let api = FakeApi::start(vec![("GET /v1/stats", Reply::json(200, STATS))]);
    assert_eq!(
        ok(&api, &["stats"]),
        "\
generation 7, 2 workers

PORT    RX-PACKETS   RX-BYTES     TX-PACKETS   TX-BYTES   RX-DROPPED   RX-ERRORS
pod-a   12           1400         10           1200       0            0
up0     1234567      1500000000   0            0          4096         2

DROP-REASON       PACKETS
spoofed_src_mac   3
ttl_exceeded      1

EVENT       COUNT
arp_reply   5
"
    );
    let stdout = ok(&api, &["stats", "-o", "json"]);
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::from_str::<serde_json::Value>(STATS).unwrap()
    );
    assert!(stdout.starts_with("{\n  \"generation\": 7,\n  \"workers\": 2,\n  \"ports\": ["));
}

#[test]
fn stats_without_drops_says_so() {
    let quiet =
        r#"{"generation": 1, "workers": 1, "ports": [], "drops": {"no_route": 0}, "events": {}}"#;
    let api = FakeApi::start(vec![("GET /v1/stats", Reply::json(200, quiet))]);
    assert_eq!(
        ok(&api, &["stats"]),
        "generation 1, 1 workers\n\nno ports\n\nno drops\n\nno events\n"
    );
}

#[test]
fn refusal_prints_the_servers_message_unchanged() {
    let message = "ports[0].mtu = 70000: must be 576 to 9000";
    let api = FakeApi::start(vec![("POST /v1/ports", Reply::error(400, message))]);
    let run = podswitchctl(
        &api,
        &["port", "add", "pod-a", "--kind", "tap", "--mtu", "70000"],
    );
    assert_eq!(run.status, 1);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, format!("Error: {message}\n"));
}

#[test]
fn refusal_without_an_error_body_shows_the_status() {
    let api = FakeApi::start(vec![(
        "GET /v1/ports",
        Reply::Raw(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\ndown".to_vec()),
    )]);
    let run = podswitchctl(&api, &["port", "list"]);
    assert_eq!(
        (run.status, run.stderr.as_str()),
        (1, "Error: HTTP 502 Bad Gateway: down\n")
    );
}

#[test]
fn conntrack_501_prints_the_message_and_fails() {
    let message = "connection tracking is not implemented yet; it comes with the services issue";
    let api = FakeApi::start(vec![("GET /v1/conntrack", Reply::error(501, message))]);
    for output in ["table", "json"] {
        let run = podswitchctl(&api, &["-o", output, "conntrack", "list"]);
        assert_eq!(run.status, 1);
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr, format!("Error: {message}\n"));
    }
}

#[test]
fn status_combines_health_and_config() {
    let health =
        r#"{"forwarding": true, "workers": 2, "generation": 7, "ports_down": ["pod-b", "up0"]}"#;
    let config = r#"{"generation": 7, "node": {"name": "node-a", "gateway": "10.244.1.1/24"},
        "ports": [{"name": "pod-a"}, {"name": "pod-b"}, {"name": "up0"}],
        "routes": [{"prefix": "10.244.2.0/24"}], "services": 4, "nodes": 1, "mirrors": 0}"#;
    let api = FakeApi::start(vec![
        ("GET /v1/health", Reply::json(200, health)),
        ("GET /v1/config", Reply::json(200, config)),
    ]);
    assert_eq!(
        ok(&api, &["status"]),
        "\
forwarding:  yes
workers:     2
generation:  7
ports_down:  pod-b, up0
node:        node-a
ports:       3
routes:      1
services:    4
nodes:       1
mirrors:     0
"
    );
    let stdout = ok(&api, &["status", "-o", "json"]);
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["health"]["workers"], 2);
    assert_eq!(printed["config"]["services"], 4);
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/v1/health", "/v1/config", "/v1/health", "/v1/config"]
    );
}

#[test]
fn status_when_not_forwarding_exits_1() {
    let api = FakeApi::start(vec![
        (
            "GET /v1/health",
            Reply::json(
                503,
                r#"{"forwarding": false, "workers": 2, "generation": 3}"#,
            ),
        ),
        (
            "GET /v1/config",
            Reply::json(200, r#"{"generation": 3, "services": 0}"#),
        ),
    ]);
    let run = podswitchctl(&api, &["status"]);
    assert_eq!(run.status, 1);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "forwarding:  no\nworkers:     2\ngeneration:  3\nservices:    0\n"
    );
}

#[test]
fn metrics_are_printed_raw() {
    let text = "# TYPE podswitch_workers gauge\npodswitch_workers 2\n";
    let api = FakeApi::start(vec![("GET /metrics", Reply::text(text))]);
    assert_eq!(ok(&api, &["metrics"]), text);
}

#[test]
fn no_socket_exits_2_naming_the_path() {
    let dir = FakeApi::start(vec![]);
    let missing = dir.dir().join("missing.sock");
    let run = podswitchctl_with(&missing, &["port", "list"], None);
    assert_eq!(run.status, 2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "Error: connect to {} (is podswitchd running?): No such file or directory (os error 2)\n",
            missing.display()
        )
    );
}

#[test]
fn a_user_without_access_to_the_socket_is_told_it_is_root_only() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let api = FakeApi::start(vec![]);
    let socket = api.socket_path();
    let mut command = Command::new(env!("CARGO_BIN_EXE_podswitchctl"));
    command.arg("--socket").arg(socket).arg("status");
    if rustix::process::geteuid().is_root() {
        // The daemon's socket: mode 0600, owned by root; the user: nobody.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(api.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        command.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let output = command.output().expect("run podswitchctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is for root only", socket.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("is podswitchd running"), "{stderr}");
    assert!(api.requests().is_empty());
}

#[test]
fn version_is_offered_in_every_help() {
    let help = |bin: &str, args: &[&str]| {
        let output = Command::new(bin).args(args).arg("--help").output().unwrap();
        assert!(output.status.success(), "{bin} {args:?} --help");
        String::from_utf8(output.stdout).unwrap()
    };
    let ctl = env!("CARGO_BIN_EXE_podswitchctl");
    let daemon = env!("CARGO_BIN_EXE_podswitchd");
    for (bin, args) in [
        (ctl, &[][..]),
        (ctl, &["status"][..]),
        (ctl, &["port", "add"][..]),
        (ctl, &["conntrack", "list"][..]),
        (daemon, &[][..]),
        (daemon, &["run"][..]),
        (daemon, &["replay"][..]),
    ] {
        let text = help(bin, args);
        assert!(
            text.contains("-V, --version"),
            "{bin} {args:?} --help:\n{text}"
        );
    }
    for (bin, args, name) in [
        (ctl, &["port", "add", "--version"][..], "podswitchctl"),
        (daemon, &["run", "--version"][..], "podswitchd"),
    ] {
        let output = Command::new(bin).args(args).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{bin} {args:?}");
        assert!(
            text.starts_with(name) && text.trim_end().ends_with(env!("CARGO_PKG_VERSION")),
            "{text}"
        );
    }
}

#[test]
fn socket_comes_from_the_environment() {
    let api = FakeApi::start(vec![("GET /metrics", Reply::text("x 1\n"))]);
    let output = Command::new(env!("CARGO_BIN_EXE_podswitchctl"))
        .arg("metrics")
        .env("PODSWITCH_SOCKET", api.socket_path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"x 1\n");
}

#[test]
fn a_server_that_is_not_the_api_exits_2() {
    let api = FakeApi::start(vec![(
        "GET /v1/ports",
        Reply::Raw(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
    )]);
    let run = podswitchctl(&api, &["port", "list"]);
    assert_eq!(run.status, 2);
    assert_eq!(
        run.stderr,
        "Error: bad response to GET /v1/ports: malformed status line \"SSH-2.0-OpenSSH_9.2\"\n"
    );
}
