//! The attachment in podswitchd: deterministic names for the port, its
//! node-side TAP and its MAC, and the API calls that create, inspect and
//! remove it (through the control crate's synchronous [`ApiClient`]).
//!
//! Every name is derived from (containerID, ifname) alone, so DEL, CHECK
//! and GC find the port without `prevResult` and without the netns.

use std::collections::BTreeMap;
use std::net::IpAddr;

use podswitch_control::client::{ApiClient, ClientError, segment};

use crate::cidr::Cidr;
use crate::types::{CniError, code};

/// Prefix of every port this plugin creates (GC sweeps only these).
pub const PORT_PREFIX: &str = "cni-";

fn fnv1a(salt: &str, container_id: &str, ifname: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt
        .bytes()
        .chain([0])
        .chain(container_id.bytes())
        .chain([0])
        .chain(ifname.bytes())
    {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The daemon port name: `cni-` and 16 hex digits.
pub fn port_name(container_id: &str, ifname: &str) -> String {
    format!("{PORT_PREFIX}{:016x}", fnv1a("port", container_id, ifname))
}

/// The node-side TAP name: `ps` and 12 hex digits (14 characters).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    format!("ps{:012x}", fnv1a("tap", container_id, ifname) >> 16)
}

/// A stable locally administered unicast MAC, `02:…`.
pub fn pod_mac(container_id: &str, ifname: &str) -> String {
    let b = fnv1a("mac", container_id, ifname).to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// The daemon's API, with errors mapped to CNI codes.
pub struct Daemon {
    client: ApiClient,
}

/// The daemon's answer to `GET /v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Forwarding.
    Forwarding,
    /// Answering, but not forwarding.
    NotForwarding,
}

impl Daemon {
    /// A client of the socket at `socket`.
    pub fn new(socket: &std::path::Path) -> Daemon {
        Daemon {
            client: ApiClient::new(socket),
        }
    }

    /// The node's pod gateway (`GET /v1/node`), e.g. `10.244.1.1/24`.
    pub fn gateway(&self) -> Result<Cidr, CniError> {
        let node = self.client.get_json("/v1/node").map_err(map_error)?;
        let text = node["gateway"].as_str().unwrap_or_default();
        Cidr::parse(text).ok_or_else(|| {
            CniError::new(
                code::DAEMON_REFUSED,
                "unexpected answer from podswitchd",
                format!("GET /v1/node: gateway = {text:?}"),
            )
        })
    }

    /// `POST /v1/ports`; returns the MTU the daemon gave the port, if it says.
    pub fn create_port(&self, port: &serde_json::Value) -> Result<Option<u32>, CniError> {
        self.client
            .send_json("POST", "/v1/ports", port)
            .map(|created| {
                created?
                    .get("mtu")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok())
            })
            .map_err(map_error)
    }

    /// `DELETE /v1/ports/<name>`; a missing port is success.
    pub fn delete_port(&self, name: &str) -> Result<(), CniError> {
        match self
            .client
            .send_empty("DELETE", &format!("/v1/ports/{}", segment(name)))
        {
            Ok(_) | Err(ClientError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    /// `GET /v1/ports/<name>`; `None` when there is no such port.
    pub fn port(&self, name: &str) -> Result<Option<serde_json::Value>, CniError> {
        match self
            .client
            .get_json(&format!("/v1/ports/{}", segment(name)))
        {
            Ok(port) => Ok(Some(port)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    /// The names of every port (`GET /v1/ports`).
    pub fn port_names(&self) -> Result<Vec<String>, CniError> {
        let ports = self.client.get_json("/v1/ports").map_err(map_error)?;
        Ok(ports["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The addresses podswitchd's ports hold (`GET /v1/ports`), each with
    /// whose it is ("podswitchd port pod-a").
    pub fn port_addresses(&self) -> Result<BTreeMap<IpAddr, String>, CniError> {
        let ports = self.client.get_json("/v1/ports").map_err(map_error)?;
        let mut out = BTreeMap::new();
        for port in ports["ports"].as_array().into_iter().flatten() {
            let name = port["name"].as_str().unwrap_or("?");
            for ip in port["ips"].as_array().into_iter().flatten() {
                if let Some(ip) = ip.as_str().and_then(|t| t.parse().ok()) {
                    out.insert(ip, format!("podswitchd port {name}"));
                }
            }
        }
        Ok(out)
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Result<Health, CniError> {
        let response = self
            .client
            .request("GET", "/v1/health", None)
            .map_err(map_error)?;
        let body: serde_json::Value =
            serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        if response.is_success() && body["forwarding"] == true {
            Ok(Health::Forwarding)
        } else {
            Ok(Health::NotForwarding)
        }
    }
}

/// True for errors where the daemon could not be reached at all (the request
/// may not have been seen), as opposed to an answer refusing it.
pub fn is_unreachable(error: &CniError) -> bool {
    error.code == code::TRY_AGAIN
}

fn map_error(error: ClientError) -> CniError {
    match error {
        ClientError::Api { status, message } => CniError::new(
            code::DAEMON_REFUSED,
            "podswitchd refused the request",
            format!("HTTP {status}: {message}"),
        ),
        other => {
            let mut details = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(s) = source {
                details.push_str(&format!(": {s}"));
                source = s.source();
            }
            CniError::new(code::TRY_AGAIN, "podswitchd is unreachable", details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let name = port_name("abc", "eth0");
        assert_eq!(name, port_name("abc", "eth0"));
        assert_ne!(name, port_name("abc", "eth1"));
        assert_ne!(name, port_name("abd", "eth0"));
        assert_eq!(name.len(), 20);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
        let tap = host_ifname("abc", "eth0");
        assert_eq!(tap.len(), 14);
        assert!(crate::env::valid_ifname(&tap));
        let mac = pod_mac("abc", "eth0");
        assert_eq!(mac.len(), 17);
        assert!(mac.starts_with("02:"));
        // Empty-string joins must not collide: ("ab", "c") vs ("a", "bc").
        assert_ne!(port_name("ab", "c"), port_name("a", "bc"));
    }
}
