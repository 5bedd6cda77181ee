//! Whole invocations through [`run`] against a scripted fake daemon, modelled
//! on the reference plugins' tests (cni.md §4).

use std::collections::HashMap;
use std::path::Path;

use podswitch_control::fake_api::{FakeApi, Reply};

use super::*;
use crate::ipam::tests::TempDir;
use crate::types::code;

const NODE: &str = r#"{"name":"n","gateway":"10.244.1.1/24","gateway_mac":"02:00:0a:f4:01:01","uplink":null,"mac_aging_secs":300}"#;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn invoke(command: &str, id: &str, netns: &str, stdin: &str) -> Outcome {
    let vars: HashMap<&str, String> = [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", netns.to_string()),
        // An interface that does not exist in the test's own namespace.
        ("CNI_IFNAME", "psunittest0".to_string()),
        ("CNI_PATH", "/opt/cni/bin".to_string()),
    ]
    .into();
    run(|k| vars.get(k).cloned(), stdin.as_bytes())
}

fn conf(version: &str, socket: &Path, data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": version, "name": "podnet", "type": "podswitch",
        "socket": socket, "mtu": 1400,
        "capabilities": {"portMappings": true}, "args": {"cni": {"labels": []}},
        "runtimeConfig": {}, "cni.dev/something": 1, "someUnknownKey": [1, 2],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
        "routes": [{"dst": "10.96.0.0/12"}],
        "ipam": {"ranges": [[{"subnet": "10.244.1.0/24"}]], "dataDir": data_dir}
    })
    .to_string()
}

fn store_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("podnet"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn error_json(outcome: &Outcome) -> serde_json::Value {
    assert!(outcome.error.is_some(), "expected an error: {outcome:?}");
    serde_json::from_str(&outcome.stdout).unwrap()
}

#[test]
fn version_lists_supported_versions_in_the_request_version() {
    for (stdin, echoed) in [
        (r#"{"cniVersion":"1.0.0"}"#, "1.0.0"),
        (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
        ("", "1.1.0"),
    ] {
        let out = invoke("VERSION", "", "dummy", stdin);
        assert!(out.error.is_none());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], echoed);
        assert_eq!(
            v["supportedVersions"],
            serde_json::json!(["0.4.0", "1.0.0", "1.1.0"])
        );
    }
}

#[test]
fn unsupported_versions_are_code_1() {
    for version in [r#""0.3.1""#, r#""2.0.0""#, "7"] {
        let stdin = format!(r#"{{"cniVersion":{version},"name":"n","type":"podswitch"}}"#);
        let out = invoke("ADD", "c1", "/run/netns/x", &stdin);
        let e = error_json(&out);
        assert_eq!(e["code"], code::INCOMPATIBLE_VERSION, "{version}");
        assert_eq!(e["cniVersion"], "1.1.0");
        assert!(
            e["details"]
                .as_str()
                .unwrap()
                .contains("supported versions are")
        );
    }
}

#[test]
fn missing_env_is_code_4_with_the_request_version() {
    let vars: HashMap<&str, &str> = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")].into();
    let out = run(
        |k| vars.get(k).map(|v| v.to_string()),
        br#"{"cniVersion":"0.4.0"}"#,
    );
    let e = error_json(&out);
    assert_eq!(e["code"], 4);
    assert_eq!(e["cniVersion"], "0.4.0");
    assert!(e["details"].as_str().unwrap().contains("CNI_NETNS"));
}

#[test]
fn malformed_stdin_gets_the_right_code_and_leaves_no_reservation() {
    let tmp = TempDir::new("malformed");
    let dir = tmp.0.display().to_string();
    let base = |extra: &str| {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{{"dataDir":"{dir}"}}{extra}}}"#
        )
    };
    let cases: Vec<(String, u32, &str)> = vec![
        ("not json".into(), 6, "not JSON"),
        ("[1,2]".into(), 6, "not a JSON object"),
        ("".into(), 6, "not JSON"),
        (r#"{"name":"podnet","type":"podswitch"}"#.into(), 1, "cniVersion: missing"),
        (r#"{"cniVersion":"9.9.9","name":"podnet","type":"podswitch"}"#.into(), 1, "9.9.9"),
        (r#"{"cniVersion":"1.0.0","type":"podswitch"}"#.into(), 7, "name: missing"),
        (r#"{"cniVersion":"1.0.0","name":"podnet"}"#.into(), 7, "type: missing"),
        (r#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge"}"#.into(), 7, "type = \"bridge\""),
        (r#"{"cniVersion":"1.0.0","name":"-bad name","type":"podswitch"}"#.into(), 7, "name = \"-bad name\""),
        (base(r#","mtu":"big""#), 7, "mtu"),
        (base(r#","mtu":20"#), 7, "mtu = 20"),
        (base(r#","ipMasq":"yes""#), 7, "ipMasq"),
        (base(r#","dns":{"nameservers":"10.0.0.1"}"#), 7, "dns.nameservers"),
        (base(r#","routes":[{"dst":"default"}]"#), 7, "routes[0].dst = \"default\""),
        (r#"{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{"type":"host-local"}}"#.into(), 2, "ipam.type = \"host-local\""),
        (format!(r#"{{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{{"dataDir":"{dir}","ranges":[[{{"subnet":"10.244.1.0/33"}}]]}}}}"#), 7, "ipam.ranges[0][0].subnet = \"10.244.1.0/33\""),
        (format!(r#"{{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{{"dataDir":"{dir}","ranges":[[{{"subnet":"10.244.1.9/24"}}]]}}}}"#), 7, "host bits"),
        (format!(r#"{{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{{"dataDir":"{dir}","ranges":[[{{"subnet":"10.244.1.0/24","rangeStart":"banana"}}]]}}}}"#), 7, "ipam.ranges[0][0].rangeStart"),
        (format!(r#"{{"cniVersion":"1.0.0","name":"podnet","type":"podswitch","ipam":{{"dataDir":"{dir}","ranges":{{"subnet":"x"}}}}}}"#), 7, "ipam.ranges"),
        (base(r#","socket":"""#), 7, "socket"),
    ];
    assert!(cases.len() >= 10);
    for (stdin, expect_code, needle) in cases {
        let out = invoke("ADD", "c1", "/run/netns/x", &stdin);
        let e = error_json(&out);
        assert_eq!(e["code"], expect_code, "{stdin}: {e}");
        let text = format!(
            "{} {}",
            e["msg"].as_str().unwrap(),
            e["details"].as_str().unwrap()
        );
        assert!(text.contains(needle), "{stdin}: {needle:?} not in {text}");
        assert!(!e["msg"].as_str().unwrap().is_empty());
    }
    assert!(store_files(&tmp.0).is_empty(), "no reservation left behind");
}

#[test]
fn add_result_shape_per_version_and_rollback_on_a_refused_port() {
    if !is_root() {
        eprintln!("skipping: needs root to enter network namespaces");
        return;
    }
    let tmp = TempDir::new("add");
    let api = FakeApi::start(vec![
        ("GET /v1/node", Reply::json(200, NODE)),
        ("GET /v1/ports", Reply::json(200, r#"{"ports": []}"#)),
        ("POST /v1/ports", Reply::json(201, "{}")),
        ("POST /v1/ports", Reply::json(201, "{}")),
        ("POST /v1/ports", Reply::json(201, "{}")),
        (
            "POST /v1/ports",
            Reply::error(409, "netns: eth0 exists in the pod"),
        ),
    ]);
    let netns = "/proc/self/ns/net";
    let mut results = Vec::new();
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let out = invoke(
            "ADD",
            &format!("c{i}"),
            netns,
            &conf(version, api.socket_path(), &tmp.0),
        );
        assert!(out.error.is_none(), "{out:?}");
        let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(r["cniVersion"], *version);
        let ip = &r["ips"][0];
        assert_eq!(ip["address"], format!("10.244.1.{}/24", i + 2));
        assert_eq!(ip["gateway"], "10.244.1.1");
        assert_eq!(ip["interface"], 0);
        assert_eq!(ip.get("version").is_some(), *version == "0.4.0", "{r}");
        if *version == "0.4.0" {
            assert_eq!(ip["version"], "4");
        }
        let iface = &r["interfaces"][0];
        assert_eq!(iface["name"], "psunittest0");
        assert_eq!(iface["sandbox"], netns);
        assert_eq!(iface["mac"].as_str().unwrap().len(), 17);
        assert_eq!(iface.get("mtu").is_some(), *version == "1.1.0");
        assert_eq!(
            r["routes"],
            serde_json::json!([{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"}])
        );
        assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
        results.push(r);
    }
    // What the daemon was asked for.
    let posts: Vec<serde_json::Value> = api
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json())
        .collect();
    assert_eq!(posts[0]["kind"], "tap");
    assert_eq!(posts[0]["name"], attach::port_name("c0", "psunittest0"));
    assert_eq!(posts[0]["ips"], serde_json::json!(["10.244.1.2"]));
    assert_eq!(posts[0]["mtu"], 1400);
    assert_eq!(posts[0]["netns"], netns);
    assert_eq!(posts[0]["pod_ifname"], "psunittest0");
    assert_eq!(posts[0]["mac"], results[0]["interfaces"][0]["mac"]);

    // A refused port: the error names the daemon's reason and the store is unchanged.
    let before = store_files(&tmp.0);
    let out = invoke(
        "ADD",
        "c9",
        netns,
        &conf("1.0.0", api.socket_path(), &tmp.0),
    );
    let e = error_json(&out);
    assert_eq!(e["code"], code::DAEMON_REFUSED);
    assert!(
        e["details"].as_str().unwrap().contains("eth0 exists"),
        "{e}"
    );
    assert_eq!(store_files(&tmp.0), before);

    // Duplicate ADD for an attachment that holds an address.
    let out = invoke(
        "ADD",
        "c0",
        netns,
        &conf("1.0.0", api.socket_path(), &tmp.0),
    );
    assert_eq!(error_json(&out)["code"], code::ADDRESS_CONFLICT);
    assert_eq!(store_files(&tmp.0), before);
}

#[test]
fn add_with_the_daemon_down_is_code_11_and_reserves_nothing() {
    let tmp = TempDir::new("down");
    let socket = tmp.0.join("nobody.sock");
    let out = invoke(
        "ADD",
        "c1",
        "/proc/self/ns/net",
        &conf("1.0.0", &socket, &tmp.0),
    );
    let e = error_json(&out);
    assert_eq!(e["code"], code::TRY_AGAIN);
    assert!(
        e["details"].as_str().unwrap().contains("nobody.sock"),
        "{e}"
    );
    assert!(store_files(&tmp.0).is_empty());
}

#[test]
fn del_of_an_unknown_attachment_succeeds_and_repeats() {
    let tmp = TempDir::new("del");
    // Every DELETE gets the fake's 404 for an unknown port.
    let api = FakeApi::start(vec![]);
    let stdin = conf("1.0.0", api.socket_path(), &tmp.0);
    for netns in ["", "/run/netns/gone-long-ago"] {
        let out = invoke("DEL", "unknown", netns, &stdin);
        assert!(out.error.is_none(), "{out:?}");
        assert_eq!(out.stdout, "");
    }
    let deletes = api
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 2, "the 404s count as gone");
}

#[test]
fn del_with_the_daemon_down_keeps_the_reservation() {
    let tmp = TempDir::new("deldown");
    let store = ipam::Store::open(&tmp.0, "podnet").unwrap();
    std::fs::write(store.dir().join("10.244.1.7"), "c1\npsunittest0").unwrap();
    let out = invoke(
        "DEL",
        "c1",
        "",
        &conf("1.0.0", &tmp.0.join("nobody.sock"), &tmp.0),
    );
    assert_eq!(error_json(&out)["code"], code::TRY_AGAIN);
    assert!(store.dir().join("10.244.1.7").exists());
}

#[test]
fn check_needs_prev_result_and_status_maps_health() {
    let tmp = TempDir::new("status");
    let api = FakeApi::start(vec![
        ("GET /v1/health", Reply::json(200, r#"{"forwarding":true}"#)),
        (
            "GET /v1/health",
            Reply::json(503, r#"{"forwarding":false}"#),
        ),
    ]);
    let stdin = conf("1.1.0", api.socket_path(), &tmp.0);
    let out = invoke("CHECK", "c1", "/run/netns/x", &stdin);
    let e = error_json(&out);
    assert_eq!(e["code"], code::INVALID_CONFIG);
    assert!(e["details"].as_str().unwrap().contains("prevResult"));
    assert!(invoke("STATUS", "", "", &stdin).error.is_none());
    assert_eq!(error_json(&invoke("STATUS", "", "", &stdin))["code"], 51);
    let down = conf("1.1.0", &tmp.0.join("nobody.sock"), &tmp.0);
    assert_eq!(error_json(&invoke("STATUS", "", "", &down))["code"], 50);
}

#[test]
fn gc_accepts_both_keys_and_removes_only_stale_attachments() {
    let tmp = TempDir::new("gcrun");
    let keep_port = attach::port_name("keep", "eth0");
    let stale_port = attach::port_name("stale", "eth0");
    let ports = serde_json::json!({"ports": [
        {"name": keep_port}, {"name": stale_port}, {"name": "pod-from-config"}
    ]})
    .to_string();
    let delete_stale = format!("DELETE /v1/ports/{stale_port}");
    let api = FakeApi::start(vec![
        ("GET /v1/ports", Reply::json(200, &ports)),
        (delete_stale.as_str(), Reply::empty(204)),
    ]);
    let store = ipam::Store::open(&tmp.0, "podnet").unwrap();
    std::fs::write(store.dir().join("10.244.1.2"), "keep\neth0").unwrap();
    std::fs::write(store.dir().join("10.244.1.3"), "stale\neth0").unwrap();
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let mut v: serde_json::Value =
            serde_json::from_str(&conf("1.1.0", api.socket_path(), &tmp.0)).unwrap();
        v[key] = serde_json::json!([{"containerID": "keep", "ifname": "eth0"}]);
        let out = invoke("GC", "", "", &v.to_string());
        assert!(out.error.is_none(), "{key}: {out:?}");
    }
    assert_eq!(store_files(&tmp.0), ["10.244.1.2", "lock"]);
    let deleted: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert!(
        deleted.iter().all(|p| p.ends_with(&stale_port)),
        "{deleted:?}"
    );
    assert!(!deleted.is_empty());
}
