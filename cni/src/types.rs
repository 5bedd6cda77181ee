//! The CNI wire types, written by hand with serde: the network configuration
//! we read on stdin, the results and errors we print on stdout.
//!
//! Input is parsed leniently (unknown keys, `capabilities`, `args`,
//! `runtimeConfig` and `cni.dev/*` are accepted and ignored unless we use
//! them); output is built in the newest model and rendered in the request's
//! `cniVersion` (only 0.4.0 carries `ips[].version`; only 1.1.0 carries
//! `interfaces[].mtu`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// The versions this plugin speaks, oldest first (VERSION reports them).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The version used for errors when the request's is missing or unsupported.
pub const LATEST_VERSION: &str = "1.1.0";

/// The plugin `type` this binary answers to.
pub const PLUGIN_TYPE: &str = "podswitch";

/// Default daemon API socket.
pub const DEFAULT_SOCKET: &str = "/run/podswitch/api.sock";

/// Default IPAM store directory (host-local's).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// Default pod MTU.
pub const DEFAULT_MTU: u32 = 1500;

/// CNI error codes (spec §Error codes; 100+ are ours, see the crate docs).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Invalid necessary environment variable.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available (daemon unreachable).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, existing pods may have limited connectivity.
    pub const NOT_AVAILABLE_DEGRADED: u32 = 51;
    /// Plugin-specific: no free address in the range set.
    pub const RANGE_EXHAUSTED: u32 = 100;
    /// Plugin-specific: an address is taken (requested IP in use, duplicate ADD).
    pub const ADDRESS_CONFLICT: u32 = 101;
    /// Plugin-specific: the daemon refused the attachment (its message follows).
    pub const DAEMON_REFUSED: u32 = 102;
    /// Plugin-specific: `CNI_IFNAME` already exists in the container.
    pub const INTERFACE_EXISTS: u32 = 103;
    /// Plugin-specific: CHECK found the attachment missing or different.
    pub const CHECK_FAILED: u32 = 104;
}

/// A CNI error, printed as JSON on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The spec (or plugin, ≥100) code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// The details: which key, value or step.
    pub details: String,
}

impl CniError {
    /// An error with `code`, `msg` and `details`.
    pub fn new(code: u32, msg: &str, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.to_string(),
            details: details.into(),
        }
    }

    /// Code 7: invalid network configuration, `details` naming the key.
    pub fn config(details: impl Into<String>) -> CniError {
        CniError::new(
            code::INVALID_CONFIG,
            "invalid network configuration",
            details,
        )
    }

    /// Code 4: invalid or missing environment variable, `details` naming it.
    pub fn env(details: impl Into<String>) -> CniError {
        CniError::new(
            code::INVALID_ENV,
            "invalid necessary environment variable",
            details,
        )
    }

    /// Code 5: I/O failure.
    pub fn io(details: impl Into<String>) -> CniError {
        CniError::new(code::IO, "I/O failure", details)
    }

    /// The error JSON in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (code {})", self.msg, self.details, self.code)
    }
}

/// The request configuration on stdin (one plugin object of the conflist,
/// with `name`, `cniVersion` and possibly `prevResult` injected).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The requested CNI version.
    pub cni_version: String,
    /// The network name.
    pub name: Option<String>,
    /// The plugin type (must be `podswitch`).
    #[serde(rename = "type")]
    pub plugin_type: Option<String>,
    /// The daemon API socket.
    pub socket: Option<String>,
    /// Pod interface MTU.
    pub mtu: Option<u32>,
    /// Masquerade pod traffic leaving the cluster (absent: the node's `[nat] masquerade`).
    #[serde(default)]
    pub ip_masq: Option<bool>,
    /// DNS settings returned in the result.
    #[serde(default)]
    pub dns: Dns,
    /// Extra routes returned in the result.
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    /// Address management.
    #[serde(default)]
    pub ipam: IpamConf,
    /// A file to append logs to instead of stderr.
    pub log_file: Option<String>,
    /// The result of the previous ADD (DEL, CHECK) or the previous plugin (ADD).
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments to keep (current key).
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// GC: the attachments to keep (the key in the spec-v1.1.0 text).
    #[serde(rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<Attachment>>,
}

/// The `ipam` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    /// Absent or `podswitch`.
    #[serde(rename = "type")]
    pub ipam_type: Option<String>,
    /// host-local range sets: each inner list yields one address.
    #[serde(default)]
    pub ranges: Vec<Vec<RangeConf>>,
    /// Store directory (one subdirectory per network).
    pub data_dir: Option<String>,
}

/// One range of a range set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    /// The subnet, e.g. `10.244.1.0/24`.
    pub subnet: String,
    /// First address to hand out.
    pub range_start: Option<IpAddr>,
    /// Last address to hand out.
    pub range_end: Option<IpAddr>,
    /// The gateway (never handed out); default network+1.
    pub gateway: Option<IpAddr>,
}

/// A route in the config (and the result).
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConf {
    /// Destination prefix.
    pub dst: String,
    /// Next hop.
    pub gw: Option<IpAddr>,
}

/// The `dns` object, in the config and the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A (containerID, ifname) pair of the GC list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// An interface of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The netns path for container interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// MTU (1.1.0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// An address of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// `"4"` or `"6"` (0.4.0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Address with prefix, e.g. `10.244.1.5/24`.
    pub address: String,
    /// The gateway of the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination prefix.
    pub dst: String,
    /// Next hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// An ADD result in the newest model; [`AddResult::render`] writes it in a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    /// Interfaces (the pod's, with `sandbox`).
    pub interfaces: Vec<Interface>,
    /// Addresses: (address with prefix, gateway, index into `interfaces`).
    pub ips: Vec<(Cidr, Option<IpAddr>, usize)>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

impl AddResult {
    /// The result JSON in `cni_version` (one of [`SUPPORTED_VERSIONS`]).
    pub fn render(&self, cni_version: &str) -> serde_json::Value {
        let v040 = cni_version == "0.4.0";
        let v11 = cni_version == "1.1.0";
        let interfaces: Vec<Interface> = self
            .interfaces
            .iter()
            .map(|i| Interface {
                mtu: if v11 { i.mtu } else { None },
                ..i.clone()
            })
            .collect();
        let ips: Vec<IpConfig> = self
            .ips
            .iter()
            .map(|(cidr, gateway, interface)| IpConfig {
                version: v040.then(|| if cidr.is_ipv4() { "4" } else { "6" }.to_string()),
                address: cidr.to_string(),
                gateway: *gateway,
                interface: Some(*interface),
            })
            .collect();
        serde_json::json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": self.dns,
        })
    }
}
