//! Where `podswitchd run` takes the node's settings from besides the file,
//! and the errors when it cannot: without `--config` and without the
//! default file, `--kubernetes` goes to the cluster for them (here: a
//! kubeconfig that does not exist, named in the error) while a plain run
//! names the missing file; `--uplink` with a file that has an `[uplink]`,
//! or naming no interface, is refused. The cluster path itself is tested
//! against a real API server in tests/tests/k8s_install.rs.

use std::path::Path;
use std::process::Output;

mod common;

const BRIDGE: &str = "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";
const DEFAULT_CONFIG: &str = "/etc/podswitch/node.toml";

/// Runs `podswitchd run ARGS` with its files in a temporary directory; `config`
/// written as --config when given. Every case here exits at start.
fn run(tag: &str, config: Option<&str>, args: &[&str]) -> Output {
    let dir = common::temp_dir("cluster-settings", tag);
    std::fs::create_dir_all(&*dir).unwrap();
    let mut cmd = common::podswitchd_run(&dir);
    cmd.args(args)
        .env_remove("NODE_NAME")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", dir.join("no-kubeconfig"));
    if let Some(text) = config {
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let out = cmd.output().expect("run podswitchd");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_file_kubernetes_takes_the_nodes_settings_from_the_cluster() {
    if Path::new(DEFAULT_CONFIG).exists() {
        eprintln!("skipping: {DEFAULT_CONFIG} exists on this machine");
        return;
    }
    let out = run(
        "kube",
        None,
        &[
            "--kubernetes",
            "--node-name",
            "node-a",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    );
    let text = stderr(&out);
    assert!(
        text.contains("no Kubernetes client to read this node's Node")
            && text.contains("/nonexistent/kubeconfig"),
        "{text}"
    );
    let plain = stderr(&run("plain", None, &[]));
    assert!(
        plain.contains(&format!("cannot read config file {DEFAULT_CONFIG}")),
        "{plain}"
    );
}

#[test]
fn following_a_cluster_without_a_bridge_needs_the_nodes_name() {
    let out = run("no-name", Some(""), &["--kubernetes"]);
    let text = stderr(&out);
    assert!(
        text.contains("--node-name or NODE_NAME") && text.contains("without [bridge]"),
        "{text}"
    );
}

#[test]
fn an_uplink_flag_and_an_uplink_section_are_refused_together() {
    let file = format!(
        "{BRIDGE}[uplink]\nport = \"up0\"\naddress = \"192.168.100.1/24\"\nmac = \"02:00:c0:a8:64:01\"\n\
         [[ports]]\nname = \"up0\"\nkind = \"afpacket\"\n"
    );
    let text = stderr(&run("both", Some(&file), &["--uplink", "eth9"]));
    assert!(
        text.contains("--uplink eth9") && text.contains("has an [uplink] already"),
        "{text}"
    );
}

#[test]
fn an_uplink_that_is_no_interface_is_refused_naming_it() {
    let text = stderr(&run("missing", Some(BRIDGE), &["--uplink", "nonexistent0"]));
    assert!(
        text.contains("--uplink nonexistent0: no such interface"),
        "{text}"
    );
}
