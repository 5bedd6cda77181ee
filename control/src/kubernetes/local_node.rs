//! This node's own Node object, read once at start when the configuration
//! leaves the node's addressing to the cluster (a DaemonSet has no file per
//! node): `spec.podCIDR` gives the pod subnet and its gateway,
//! `status.addresses`' InternalIP the uplink. The Node is registered by
//! kubelet and its pod CIDR allocated by kube-controller-manager, either
//! possibly a little after podswitchd starts: start-up waits for both,
//! saying what it waits for, as flannel does.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api as KubeApi;
use podswitch_dataplane::config::Ipv4Cidr;

use super::translate::{node_internal_ip, node_pod_cidr};

/// How often the Node is read again while it lacks something.
const RETRY: Duration = Duration::from_secs(2);
/// How often the same reason for waiting is logged again.
const LOG_AGAIN: Duration = Duration::from_secs(30);

/// What this node's Node says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// The Node's name.
    pub name: String,
    /// Its IPv4 pod CIDR, once allocated.
    pub pod_cidr: Option<Ipv4Cidr>,
    /// Its first IPv4 InternalIP.
    pub internal_ip: Option<Ipv4Addr>,
}

impl LocalNode {
    /// The facts of `node`.
    pub fn of(node: &Node) -> LocalNode {
        LocalNode {
            name: node.metadata.name.clone().unwrap_or_default(),
            pod_cidr: node_pod_cidr(node),
            internal_ip: node_internal_ip(node),
        }
    }

    /// What is still missing of what start-up `needs`, as a sentence; `None` when complete.
    pub fn missing(&self, needs: &Needs) -> Option<String> {
        let mut missing = Vec::new();
        if needs.pod_cidr && self.pod_cidr.is_none() {
            missing.push("no IPv4 spec.podCIDR (kube-controller-manager --allocate-node-cidrs allocates one; or give [bridge] in the config file)");
        }
        if needs.internal_ip && self.internal_ip.is_none() {
            missing.push("no IPv4 InternalIP in status.addresses (or give --uplink IFACE)");
        }
        (!missing.is_empty()).then(|| format!("node {} has {}", self.name, missing.join(" and ")))
    }
}

/// What start-up needs from the Node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The pod CIDR (the file has no `[bridge]`).
    pub pod_cidr: bool,
    /// The InternalIP (the file has no `[uplink]` and there is no `--uplink`).
    pub internal_ip: bool,
}

/// Reads Node `name` until it has what `needs` asks for, every 2 s,
/// logging why it waits; gives up when `stop` is set (SIGTERM).
pub fn wait_for_local_node(
    kubeconfig: Option<&Path>,
    name: &str,
    needs: Needs,
    stop: &AtomicBool,
) -> Result<LocalNode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime to read this node's Node")?;
    runtime.block_on(async {
        let client = super::client(kubeconfig)
            .await
            .context("no Kubernetes client to read this node's Node")?;
        let nodes = KubeApi::<Node>::all(client);
        let mut last: Option<(String, Instant)> = None;
        loop {
            let why = match nodes.get(name).await {
                Ok(node) => {
                    let local = LocalNode::of(&node);
                    match local.missing(&needs) {
                        None => return Ok(local),
                        Some(why) => why,
                    }
                }
                Err(e) => format!("cannot read node {name}: {e}"),
            };
            let repeat = last
                .as_ref()
                .is_some_and(|(w, at)| *w == why && at.elapsed() < LOG_AGAIN);
            if !repeat {
                tracing::warn!("waiting for this node's Node: {why}; retrying every {RETRY:?}");
                last = Some((why, Instant::now()));
            }
            let until = Instant::now() + RETRY;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    bail!("stopped while waiting for node {name}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(pod_cidrs: &[&str], addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("node-a".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidrs: Some(pod_cidrs.iter().map(|c| c.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_ipv4_pod_cidr_and_internal_ip_are_taken() {
        let n = node(
            &["fd00:10:244:1::/64", "10.244.1.0/24"],
            &[
                ("Hostname", "node-a"),
                ("InternalIP", "fd00::2"),
                ("InternalIP", "192.168.50.2"),
            ],
        );
        let local = LocalNode::of(&n);
        assert_eq!(local.pod_cidr, Some("10.244.1.0/24".parse().unwrap()));
        assert_eq!(local.internal_ip, Some(Ipv4Addr::new(192, 168, 50, 2)));
        let all = Needs {
            pod_cidr: true,
            internal_ip: true,
        };
        assert_eq!(local.missing(&all), None);
    }

    #[test]
    fn what_is_missing_is_named() {
        let local = LocalNode::of(&node(&[], &[("ExternalIP", "203.0.113.9")]));
        assert_eq!(local.missing(&Needs::default()), None);
        let cidr = local
            .missing(&Needs {
                pod_cidr: true,
                internal_ip: false,
            })
            .unwrap();
        assert!(
            cidr.starts_with("node node-a has no IPv4 spec.podCIDR"),
            "{cidr}"
        );
        assert!(!cidr.contains("InternalIP"), "{cidr}");
        let both = local
            .missing(&Needs {
                pod_cidr: true,
                internal_ip: true,
            })
            .unwrap();
        assert!(
            both.contains("spec.podCIDR") && both.contains("InternalIP"),
            "{both}"
        );
    }
}
