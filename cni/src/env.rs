//! The `CNI_*` environment variables, validated per command as Go `skel`
//! does: an empty variable counts as missing, and the container ID and
//! interface name are checked only for the commands that need them.
//!
//! Only `CNI_*` variables are read: podman's cleanup path and CRI runtimes
//! do not pass anything else. `CNI_PATH` is never required, because this
//! plugin delegates to no other plugin.

use std::net::IpAddr;

use crate::types::CniError;

/// The operation asked for by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (best effort, idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Remove attachments not in the valid list (1.1.0).
    Gc,
    /// Report readiness (1.1.0).
    Status,
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, GC, STATUS).
    pub container_id: String,
    /// `CNI_NETNS` (may be empty on DEL).
    pub netns: String,
    /// `CNI_IFNAME` (empty for VERSION, GC, STATUS).
    pub ifname: String,
    /// Addresses requested with `CNI_ARGS` `IP=` (comma-separated allowed).
    pub requested_ips: Vec<IpAddr>,
}

impl Env {
    /// Reads and validates the variables through `get` (the process
    /// environment in the binary, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND").as_deref() {
            None => return Err(CniError::env("CNI_COMMAND is missing")),
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some(other) => {
                return Err(CniError::env(format!("unknown CNI_COMMAND: {other}")));
            }
        };
        let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: String::new(),
            ifname: String::new(),
            requested_ips: Vec::new(),
        };
        if !per_attachment {
            return Ok(env);
        }
        let container_id =
            var("CNI_CONTAINERID").ok_or_else(|| CniError::env("CNI_CONTAINERID is missing"))?;
        if !valid_container_id(&container_id) {
            return Err(CniError::env(format!(
                "CNI_CONTAINERID = {container_id:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
            )));
        }
        let netns = var("CNI_NETNS").unwrap_or_default();
        if netns.is_empty() && command != Command::Del {
            return Err(CniError::env("CNI_NETNS is missing"));
        }
        let ifname = var("CNI_IFNAME").ok_or_else(|| CniError::env("CNI_IFNAME is missing"))?;
        if !valid_ifname(&ifname) {
            return Err(CniError::env(format!(
                "CNI_IFNAME = {ifname:?}: must be 1 to 15 characters, not . or .., without /, : or whitespace"
            )));
        }
        env.container_id = container_id;
        env.netns = netns;
        env.ifname = ifname;
        env.requested_ips = parse_args(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(env)
    }
}

/// The container ID rule of the spec.
pub fn valid_container_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The interface name rule of the spec (the kernel's `dev_valid_name`).
pub fn valid_ifname(name: &str) -> bool {
    podswitch_dataplane::io::netlink::check_ifname(name).is_ok()
}

/// `K=V;K=V` → the `IP=` addresses; other keys are ignored (runtimes send
/// `IgnoreUnknown=1` and `K8S_POD_*`).
fn parse_args(args: &str) -> Result<Vec<IpAddr>, CniError> {
    let mut ips = Vec::new();
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CniError::env(format!(
                "CNI_ARGS: {pair:?} is not KEY=VALUE"
            )));
        };
        if key != "IP" {
            continue;
        }
        for ip in value.split(',').filter(|v| !v.is_empty()) {
            let parsed = ip
                .parse()
                .map_err(|_| CniError::env(format!("CNI_ARGS IP = {ip:?}: not an IP address")))?;
            ips.push(parsed);
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::code;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const FULL: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn each_missing_or_empty_variable_is_code_4_naming_it() {
        for cmd in ["ADD", "CHECK", "DEL"] {
            for missing in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
                if cmd == "DEL" && missing == "CNI_NETNS" {
                    continue;
                }
                for empty in [false, true] {
                    let pairs: Vec<(&str, &str)> = FULL
                        .iter()
                        .map(|&(k, v)| (k, if k == "CNI_COMMAND" { cmd } else { v }))
                        .filter(|(k, _)| empty || *k != missing)
                        .map(|(k, v)| (k, if empty && k == missing { "" } else { v }))
                        .collect();
                    let err = env_of(&pairs).unwrap_err();
                    assert_eq!(err.code, code::INVALID_ENV, "{cmd} {missing}");
                    assert!(err.details.contains(missing), "{cmd}: {err}");
                }
            }
        }
    }

    #[test]
    fn del_accepts_an_empty_netns_and_version_needs_only_the_command() {
        let env = env_of(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(env.netns, "");
        for cmd in ["VERSION", "GC", "STATUS"] {
            let env = env_of(&[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", ""),
                ("CNI_NETNS", "dummy"),
                ("CNI_IFNAME", "dummy"),
            ])
            .unwrap();
            assert_eq!(env.container_id, "");
        }
    }

    #[test]
    fn bad_values_are_code_4_naming_the_variable() {
        let cases = [
            ("CNI_COMMAND", "FROB", "unknown CNI_COMMAND: FROB"),
            ("CNI_CONTAINERID", "-bad", "CNI_CONTAINERID"),
            ("CNI_IFNAME", "a/b", "CNI_IFNAME"),
            ("CNI_IFNAME", "sixteen-chars-xx", "CNI_IFNAME"),
            ("CNI_ARGS", "IP=10.0.0.300", "CNI_ARGS IP"),
            ("CNI_ARGS", "garbage", "CNI_ARGS"),
        ];
        for (key, value, needle) in cases {
            let mut pairs: Vec<(&str, &str)> =
                FULL.iter().filter(|(k, _)| *k != key).copied().collect();
            pairs.push((key, value));
            let err = env_of(&pairs).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{key}={value}");
            assert!(err.details.contains(needle), "{err}");
        }
    }

    #[test]
    fn cni_args_ip_is_read_and_other_keys_ignored() {
        let mut pairs = FULL.to_vec();
        pairs.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.244.1.9;MAC=02:00:00:00:00:01",
        ));
        let env = env_of(&pairs).unwrap();
        assert_eq!(
            env.requested_ips,
            vec!["10.244.1.9".parse::<IpAddr>().unwrap()]
        );
    }
}
