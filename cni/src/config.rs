//! The request configuration on stdin, parsed and validated into [`Config`].
//!
//! Order of checks, so each failure gets its spec code: not JSON or not an
//! object → 6; `cniVersion` missing or unsupported → 1; a field of the
//! wrong type → 7 naming its path; `ipam.type` other than ours → 2;
//! any other invalid value → 7 naming the key and the value.

use std::path::PathBuf;

use crate::cidr::Cidr;
use crate::env::valid_container_id;
use crate::ipam::{Range, ranges_from_conf};
use crate::types::{
    Attachment, CniError, DEFAULT_DATA_DIR, DEFAULT_SOCKET, Dns, NetConf, PLUGIN_TYPE, Route,
    SUPPORTED_VERSIONS, code,
};

/// A validated request configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The requested (supported) CNI version; results are rendered in it.
    pub cni_version: String,
    /// The network name (the IPAM store's subdirectory).
    pub name: String,
    /// The daemon's API socket.
    pub socket: PathBuf,
    /// Pod MTU; `None`: the daemon's default (uplink MTU − 50 with the overlay).
    pub mtu: Option<u32>,
    /// Masquerade this pod's traffic leaving the cluster; `None`: the node's default.
    pub ip_masq: Option<bool>,
    /// DNS for the result.
    pub dns: Dns,
    /// Extra routes for the result.
    pub routes: Vec<Route>,
    /// Configured range sets; `None` means the daemon's pod subnet.
    pub ranges: Option<Vec<Vec<Range>>>,
    /// IPAM store root.
    pub data_dir: PathBuf,
    /// Log file (stderr when absent).
    pub log_file: Option<PathBuf>,
    /// `prevResult`, if any.
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments to keep.
    pub valid_attachments: Vec<Attachment>,
}

/// The request's `cniVersion` if the text is a JSON object carrying a supported one.
pub fn request_version(stdin: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    let version = value.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS
        .contains(&version)
        .then(|| version.to_string())
}

/// Parses and validates stdin.
pub fn parse(stdin: &[u8]) -> Result<Config, CniError> {
    let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE,
            "failed to decode the network configuration",
            format!("stdin is not JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(CniError::new(
            code::DECODE,
            "failed to decode the network configuration",
            "stdin is not a JSON object",
        ));
    }
    check_version(value.get("cniVersion"))?;
    let conf: NetConf = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        CniError::config(format!("{path}: {}", e.into_inner()))
    })?;
    let name = conf
        .name
        .clone()
        .ok_or_else(|| CniError::config("name: missing"))?;
    if !valid_container_id(&name) {
        return Err(CniError::config(format!(
            "name = {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )));
    }
    match conf.plugin_type.as_deref() {
        Some(PLUGIN_TYPE) => {}
        Some(other) => {
            return Err(CniError::config(format!(
                "type = {other:?}: this plugin is {PLUGIN_TYPE:?}"
            )));
        }
        None => return Err(CniError::config("type: missing")),
    }
    if let Some(ipam_type) = conf.ipam.ipam_type.as_deref()
        && ipam_type != PLUGIN_TYPE
    {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            "unsupported field in network configuration",
            format!(
                "ipam.type = {ipam_type:?}: podswitch allocates addresses itself; leave ipam.type out or set it to {PLUGIN_TYPE:?}"
            ),
        ));
    }
    let mtu = conf.mtu;
    if let Some(mtu) = mtu.filter(|m| !(68..=65535).contains(m)) {
        return Err(CniError::config(format!(
            "mtu = {mtu}: must be 68 to 65535"
        )));
    }
    let mut routes = Vec::new();
    for (i, route) in conf.routes.iter().enumerate() {
        let dst = Cidr::parse(&route.dst).ok_or_else(|| {
            CniError::config(format!(
                "routes[{i}].dst = {:?}: not an address/prefix",
                route.dst
            ))
        })?;
        if route.gw.is_some_and(|gw| gw.is_ipv4() != dst.is_ipv4()) {
            return Err(CniError::config(format!(
                "routes[{i}].gw = {}: not the family of dst {}",
                route.gw.map(|g| g.to_string()).unwrap_or_default(),
                route.dst
            )));
        }
        routes.push(Route {
            dst: route.dst.clone(),
            gw: route.gw,
        });
    }
    let ranges = if conf.ipam.ranges.is_empty() {
        None
    } else {
        Some(ranges_from_conf(&conf.ipam.ranges)?)
    };
    let socket = conf.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into());
    if socket.is_empty() {
        return Err(CniError::config("socket = \"\": must be a path"));
    }
    let data_dir = conf
        .ipam
        .data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    if data_dir.is_empty() {
        return Err(CniError::config("ipam.dataDir = \"\": must be a path"));
    }
    let valid_attachments = conf
        .valid_attachments
        .clone()
        .or_else(|| conf.attachments.clone())
        .unwrap_or_default();
    Ok(Config {
        cni_version: conf.cni_version.clone(),
        name,
        socket: socket.into(),
        mtu,
        ip_masq: conf.ip_masq,
        dns: conf.dns.clone(),
        routes,
        ranges,
        data_dir: data_dir.into(),
        log_file: conf.log_file.clone().map(PathBuf::from),
        prev_result: conf.prev_result.clone(),
        valid_attachments,
    })
}

fn check_version(version: Option<&serde_json::Value>) -> Result<(), CniError> {
    let supported = SUPPORTED_VERSIONS.join(", ");
    let incompatible = |details: String| {
        CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            details,
        )
    };
    match version {
        None => Err(incompatible(format!(
            "cniVersion: missing; supported versions are {supported}"
        ))),
        Some(serde_json::Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => Ok(()),
        Some(other) => Err(incompatible(format!(
            "cniVersion = {other}: supported versions are {supported}"
        ))),
    }
}
