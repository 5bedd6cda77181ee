//! ADD, DEL, CHECK, GC and STATUS.
//!
//! ADD: refuse an existing `CNI_IFNAME`, reserve the address(es), ask the
//! daemon for the port; on any failure after the reservation, release it
//! before returning the error, but only once the port is known not to
//! exist: when the daemon went away during the request (killed after it
//! stored the port, before it answered), the plugin waits for it to come
//! back and deletes the port first, so that a port and its reservation
//! exist together or not at all.
//!
//! DEL removes the port first and releases the address only once the
//! daemon has confirmed the port is gone (or never existed). If the daemon
//! cannot be reached, DEL fails with code 11 and keeps the reservation: the
//! daemon keeps its ports across restarts, so releasing would let the next
//! ADD hand the same address to a second pod while the first still holds
//! it. The runtime retries DEL (the spec requires it to), and GC cleans up
//! anything left. Missing netns, empty `CNI_NETNS`, missing `prevResult`, an
//! unknown attachment and a repeated DEL all succeed.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::attach::{Daemon, Health, PORT_PREFIX, host_ifname, is_unreachable, pod_mac, port_name};
use crate::cidr::Cidr;
use crate::config::Config;
use crate::env::Env;
use crate::ipam::{Allocation, Range, Store};
use crate::netcheck;
use crate::types::{AddResult, CniError, DEFAULT_MTU, Interface, Route, code};

/// ADD: returns the result JSON.
pub fn add(env: &Env, config: &Config) -> Result<serde_json::Value, CniError> {
    let daemon = Daemon::new(&config.socket);
    let gateway = daemon.gateway()?;
    let sets = range_sets(config, gateway)?;
    if netcheck::interface_exists(&env.netns, &env.ifname)? {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            "interface already exists in the container",
            format!("CNI_IFNAME = {} exists in {}", env.ifname, env.netns),
        ));
    }
    let store = Store::open(&config.data_dir, &config.name)?;
    // Never an address a port already holds (a range overlapping ports
    // made by hand); one taken meanwhile is refused by the daemon (409).
    let taken = daemon.port_addresses()?;
    let allocations = store.allocate_except(
        &sets,
        &env.container_id,
        &env.ifname,
        &env.requested_ips,
        &taken,
    )?;
    let name = port_name(&env.container_id, &env.ifname);
    let mac = pod_mac(&env.container_id, &env.ifname);
    // The dataplane configures IPv4 only for now; IPv6 addresses are
    // reserved and reported, not yet placed on the interface.
    let v4: Vec<String> = allocations
        .iter()
        .filter(|a| a.address.is_ipv4())
        .map(|a| a.address.addr.to_string())
        .collect();
    let mut port = serde_json::json!({
        "name": name,
        "kind": "tap",
        "ifname": host_ifname(&env.container_id, &env.ifname),
        "netns": env.netns,
        "pod_ifname": env.ifname,
        "mac": mac,
        "ips": v4,
        "masquerade": config.ip_masq,
    });
    if let Some(mtu) = config.mtu {
        port["mtu"] = mtu.into();
    }
    let mtu = match daemon.create_port(&port) {
        Ok(given) => config.mtu.or(given).unwrap_or(DEFAULT_MTU),
        Err(error) => {
            // Unreachable, the request may have been applied before the
            // connection broke (the answer lost): the address is released
            // only once the daemon says the port is gone, else both stay.
            if is_unreachable(&error) && !delete_when_back(&daemon, &name) {
                let mut error = error;
                error.details.push_str(&format!(
                    "; port {name} may exist: its address stays reserved until DEL"
                ));
                return Err(error);
            }
            let _ = store.release(&env.container_id, &env.ifname);
            return Err(error);
        }
    };
    Ok(add_result(env, config, &mac, &allocations, mtu).render(&config.cni_version))
}

/// How long an ADD whose answer was lost waits for the daemon to come back
/// (systemd restarts it 100 ms after a crash) to learn whether its port exists.
pub const DAEMON_RETURN_WAIT: Duration = Duration::from_secs(10);

/// Deletes port `name` once the daemon answers again, within
/// [`DAEMON_RETURN_WAIT`]; true when the daemon said it is gone.
fn delete_when_back(daemon: &Daemon, name: &str) -> bool {
    let deadline = Instant::now() + DAEMON_RETURN_WAIT;
    loop {
        match daemon.delete_port(name) {
            Ok(()) => return true,
            Err(e) if is_unreachable(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => return false,
        }
    }
}

fn add_result(
    env: &Env,
    config: &Config,
    mac: &str,
    allocations: &[Allocation],
    mtu: u32,
) -> AddResult {
    let mut routes = Vec::new();
    if let Some(v4) = allocations.iter().find(|a| a.address.is_ipv4()) {
        routes.push(Route {
            dst: "0.0.0.0/0".to_string(),
            gw: Some(v4.gateway),
        });
    }
    routes.extend(config.routes.iter().cloned());
    AddResult {
        interfaces: vec![Interface {
            name: env.ifname.clone(),
            mac: mac.to_string(),
            sandbox: Some(env.netns.clone()),
            mtu: Some(mtu),
        }],
        ips: allocations
            .iter()
            .map(|a| (a.address, Some(a.gateway), 0))
            .collect(),
        routes,
        dns: config.dns.clone(),
    }
}

/// The range sets to allocate from: the configured ones (whose IPv4 ranges
/// must be the daemon's pod subnet and gateway, since the daemon configures
/// the pod with those), or the daemon's subnet.
fn range_sets(config: &Config, gateway: Cidr) -> Result<Vec<Vec<Range>>, CniError> {
    let daemon_subnet = Cidr {
        addr: gateway.network(),
        prefix: gateway.prefix,
    };
    let Some(sets) = &config.ranges else {
        let conf = crate::types::RangeConf {
            subnet: daemon_subnet.to_string(),
            range_start: None,
            range_end: None,
            gateway: Some(gateway.addr),
        };
        return Ok(vec![vec![Range::from_conf(&conf, "GET /v1/node gateway")?]]);
    };
    for (i, set) in sets.iter().enumerate() {
        for (j, range) in set.iter().filter(|r| r.subnet.is_ipv4()).enumerate() {
            if range.subnet != daemon_subnet || range.gateway != gateway.addr {
                return Err(CniError::config(format!(
                    "ipam.ranges[{i}][{j}] = {} gateway {}: podswitchd's pod subnet is {daemon_subnet} with gateway {} (GET /v1/node)",
                    range.subnet, range.gateway, gateway.addr
                )));
            }
        }
    }
    Ok(sets.clone())
}

/// DEL: best effort and idempotent (see the module docs for the one failure).
pub fn del(env: &Env, config: &Config) -> Result<(), CniError> {
    let daemon = Daemon::new(&config.socket);
    daemon.delete_port(&port_name(&env.container_id, &env.ifname))?;
    let store = Store::open(&config.data_dir, &config.name)?;
    store.release(&env.container_id, &env.ifname)?;
    Ok(())
}

/// What CHECK needs from `prevResult`.
struct Expected {
    mac: Option<String>,
    v4: Vec<(IpAddr, Option<IpAddr>)>,
    all: Vec<IpAddr>,
}

fn expected(env: &Env, prev: &serde_json::Value) -> Result<Expected, CniError> {
    let interfaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    let index = interfaces
        .iter()
        .position(|i| i["name"] == env.ifname.as_str() && i["sandbox"].is_string());
    let Some(index) = index else {
        return Err(CniError::config(format!(
            "prevResult.interfaces: no {} with a sandbox",
            env.ifname
        )));
    };
    let mut v4 = Vec::new();
    let mut all = Vec::new();
    for (k, ip) in prev["ips"].as_array().into_iter().flatten().enumerate() {
        if ip["interface"].as_u64() != Some(index as u64) {
            continue;
        }
        let address = ip["address"]
            .as_str()
            .and_then(Cidr::parse)
            .ok_or_else(|| {
                CniError::config(format!(
                    "prevResult.ips[{k}].address = {}: not an address/prefix",
                    ip["address"]
                ))
            })?;
        let gateway = ip["gateway"].as_str().and_then(|g| g.parse().ok());
        all.push(address.addr);
        if address.is_ipv4() {
            v4.push((address.addr, gateway));
        }
    }
    Ok(Expected {
        mac: interfaces[index]["mac"].as_str().map(str::to_string),
        v4,
        all,
    })
}

/// CHECK: the attachment in `prevResult` exists in the daemon, the store
/// and the pod's namespace.
pub fn check(env: &Env, config: &Config) -> Result<(), CniError> {
    let prev = config.prev_result.as_ref().ok_or_else(|| {
        CniError::config("prevResult: missing (CHECK needs the result of the ADD)")
    })?;
    let expected = expected(env, prev)?;
    let failed =
        |details: String| CniError::new(code::CHECK_FAILED, "attachment check failed", details);
    let name = port_name(&env.container_id, &env.ifname);
    if Daemon::new(&config.socket).port(&name)?.is_none() {
        return Err(failed(format!("podswitchd has no port {name}")));
    }
    let store = Store::open(&config.data_dir, &config.name)?;
    let held = store.find(&env.container_id, &env.ifname)?;
    if let Some(ip) = expected.all.iter().find(|ip| !held.contains(ip)) {
        return Err(failed(format!(
            "{ip} is not reserved for {}/{}",
            env.container_id, env.ifname
        )));
    }
    let view = netcheck::inspect(&env.netns, &env.ifname)?;
    let Some(mac) = view.mac else {
        return Err(failed(format!(
            "{} does not exist in {}",
            env.ifname, env.netns
        )));
    };
    if expected
        .mac
        .as_ref()
        .is_some_and(|m| !m.eq_ignore_ascii_case(&mac))
    {
        return Err(failed(format!(
            "{} has MAC {mac}, prevResult says {}",
            env.ifname,
            expected.mac.unwrap_or_default()
        )));
    }
    for (ip, gateway) in &expected.v4 {
        let IpAddr::V4(v4) = ip else { continue };
        if !view.local_v4.contains(v4) {
            return Err(failed(format!("{ip} is not configured in {}", env.netns)));
        }
        if let Some(IpAddr::V4(gw)) = gateway
            && !view
                .default_routes
                .iter()
                .any(|(i, g)| i == &env.ifname && g == gw)
        {
            return Err(failed(format!(
                "no default route via {gw} on {} in {}",
                env.ifname, env.netns
            )));
        }
    }
    Ok(())
}

/// GC: removes ports and reservations of attachments not in the valid
/// list; carries on past errors and reports them all.
///
/// The daemon serves one pod subnet, so one podswitch network per node is
/// assumed: every `cni-` port that is not a valid attachment of this
/// network is removed.
pub fn gc(config: &Config) -> Result<(), CniError> {
    let daemon = Daemon::new(&config.socket);
    let keep: HashSet<(String, String)> = config
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let keep_ports: HashSet<String> = keep
        .iter()
        .map(|(id, ifname)| port_name(id, ifname))
        .collect();
    let mut errors = Vec::new();
    let store = Store::open(&config.data_dir, &config.name)?;
    let mut release = HashSet::new();
    for r in store.reservations()? {
        let owner = (r.container_id.clone(), r.ifname.clone());
        if keep.contains(&owner) {
            continue;
        }
        // Release only once the port is known gone (see DEL).
        match daemon.delete_port(&port_name(&r.container_id, &r.ifname)) {
            Ok(()) => {
                release.insert(owner);
            }
            Err(e) => errors.push(format!("{}/{}: {e}", r.container_id, r.ifname)),
        }
    }
    let mut keep_after = keep.clone();
    for r in store.reservations()? {
        let owner = (r.container_id.clone(), r.ifname.clone());
        if !release.contains(&owner) {
            keep_after.insert(owner);
        }
    }
    if let Err(e) = store.retain(&keep_after) {
        errors.push(e.to_string());
    }
    match daemon.port_names() {
        Ok(names) => {
            for name in names {
                if name.starts_with(PORT_PREFIX)
                    && !keep_ports.contains(&name)
                    && let Err(e) = daemon.delete_port(&name)
                {
                    errors.push(format!("port {name}: {e}"));
                }
            }
        }
        Err(e) => errors.push(format!("list ports: {e}")),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let code = if errors.len() == 1 && errors[0].contains("unreachable") {
            code::TRY_AGAIN
        } else {
            code::IO
        };
        Err(CniError::new(
            code,
            "garbage collection incomplete",
            errors.join("; "),
        ))
    }
}

/// STATUS: 50 when the daemon cannot be reached, 51 when it is not forwarding.
pub fn status(config: &Config) -> Result<(), CniError> {
    match Daemon::new(&config.socket).health() {
        Ok(Health::Forwarding) => Ok(()),
        Ok(Health::NotForwarding) => Err(CniError::new(
            code::NOT_AVAILABLE_DEGRADED,
            "podswitchd is not forwarding",
            format!(
                "GET /v1/health on {}: not forwarding",
                config.socket.display()
            ),
        )),
        Err(e) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "podswitchd is not available",
            e.details,
        )),
    }
}
