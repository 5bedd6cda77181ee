//! Opening the live ports of a snapshot: one queue per worker per port.
//!
//! TAP ports get one queue per worker on a multi-queue device; a TAP with a
//! pod namespace is re-attached if the persistent device is already there
//! (daemon restart) and created and placed otherwise. AF_PACKET ports get
//! one socket per worker in a fanout group, so the kernel spreads flows.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use podswitch_dataplane::config::{PortKind, PortSpec, Snapshot};
use podswitch_dataplane::io::PortQueue;
use podswitch_dataplane::io::afpacket::{AfPacketOptions, AfPacketQueue};
use podswitch_dataplane::io::tap::{self, PodPlacement, TapOptions};
use podswitch_dataplane::wire::MacAddr;

/// The queues of every port, as `queues[worker][port]`.
pub type WorkerQueues = Vec<Vec<Option<Box<dyn PortQueue>>>>;

/// How a TAP port was brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapOutcome {
    /// A new device was created (and placed into the pod).
    Created,
    /// An existing persistent device was re-attached.
    Reattached,
}

/// What [`open_all`] opened, and what it could not.
pub struct Opened {
    /// The queues, as `queues[worker][port]` (`None` for a port that failed).
    pub queues: WorkerQueues,
    /// Per port opened, a line for the log.
    pub notes: Vec<String>,
    /// The ports whose device could not be opened, with why: they stay
    /// configured but down, and the other ports forward.
    pub failed: Vec<(PortSpec, anyhow::Error)>,
}

/// TAP queue descriptors by port name, handed from one process to the next
/// (`podswitchd run --takeover`), in worker order.
pub type HandedTaps = HashMap<String, Vec<OwnedFd>>;

/// Opens every port's queues for `workers` workers. A port that fails (a
/// pod's namespace gone while the daemon was down) does not stop the others.
pub fn open_all(snapshot: &Snapshot, workers: usize, fanout_base: u16) -> Opened {
    open_some(snapshot, workers, fanout_base, |_| true)
}

/// [`open_all`] without the TAP ports: a process taking over opens them
/// with [`Opened::add_taps`] once the old one has handed them over.
pub fn open_all_but_taps(snapshot: &Snapshot, workers: usize, fanout_base: u16) -> Opened {
    open_some(snapshot, workers, fanout_base, |p| p.kind != PortKind::Tap)
}

fn open_some(
    snapshot: &Snapshot,
    workers: usize,
    fanout_base: u16,
    which: impl Fn(&PortSpec) -> bool,
) -> Opened {
    let mut opened = Opened {
        queues: (0..workers)
            .map(|_| (0..snapshot.port_id_limit()).map(|_| None).collect())
            .collect(),
        notes: Vec::new(),
        failed: Vec::new(),
    };
    for port in snapshot.ports.iter().filter(|p| which(p)) {
        let result = open_port(snapshot, port, workers, fanout_base);
        opened.place(port, result);
    }
    opened
}

impl Opened {
    /// No queues yet, for `workers` workers.
    pub fn none(snapshot: &Snapshot, workers: usize) -> Opened {
        open_some(snapshot, workers, 0, |_| false)
    }

    /// Puts a port's queues (or its failure) in place.
    fn place(&mut self, port: &PortSpec, result: Result<(Vec<Box<dyn PortQueue>>, String)>) {
        let queues = match result {
            Ok((queues, note)) => {
                self.notes.push(note);
                queues
            }
            Err(e) => {
                self.failed.push((port.clone(), e));
                return;
            }
        };
        for (w, q) in queues.into_iter().enumerate() {
            if let Some(slot) = self
                .queues
                .get_mut(w)
                .and_then(|wq| wq.get_mut(usize::from(port.id.0)))
            {
                *slot = Some(q);
            }
        }
    }

    /// Opens the TAP ports [`open_all_but_taps`] left out: a port whose
    /// queues are in `handed` (one per worker) takes them, the others open
    /// their device as usual.
    pub fn add_taps(&mut self, snapshot: &Snapshot, workers: usize, handed: &mut HandedTaps) {
        for port in snapshot.ports.iter().filter(|p| p.kind == PortKind::Tap) {
            let result = match handed.remove(&port.name).filter(|fds| fds.len() == workers) {
                Some(fds) => {
                    let queues = fds
                        .into_iter()
                        .map(|fd| {
                            Box::new(tap::TapQueue::from_fd(fd, port.offload)) as Box<dyn PortQueue>
                        })
                        .collect();
                    let note = format!("port {}: tap handed over with {workers} queues", port.name);
                    Ok((queues, note))
                }
                None => open_port(snapshot, port, workers, 0),
            };
            self.place(port, result);
        }
    }
}

/// Opens one queue per worker for `port`; returns them and a line for the log.
pub fn open_port(
    snapshot: &Snapshot,
    port: &PortSpec,
    workers: usize,
    fanout_base: u16,
) -> Result<(Vec<Box<dyn PortQueue>>, String)> {
    match port.kind {
        PortKind::Tap => {
            let (qs, outcome) = open_tap(snapshot, port, workers)?;
            let note = format!(
                "port {}: tap {:?} with {} queues",
                port.name,
                outcome,
                qs.len()
            );
            Ok((
                qs.into_iter()
                    .map(|q| Box::new(q) as Box<dyn PortQueue>)
                    .collect(),
                note,
            ))
        }
        PortKind::Afpacket => {
            let group = fanout_base.wrapping_add(port.id.0);
            let mut qs: Vec<Box<dyn PortQueue>> = Vec::with_capacity(workers);
            for w in 0..workers {
                let opts = AfPacketOptions {
                    fanout_group: Some(group),
                    vnet_hdr: port.offload,
                    rx_ring: port.rx_ring,
                    ..AfPacketOptions::new(port.ifname.clone())
                };
                let mut q = AfPacketQueue::open(&opts).with_context(|| {
                    format!(
                        "port {}: AF_PACKET socket {w} on {}",
                        port.name, port.ifname
                    )
                })?;
                if let Some(tx) = crate::tunnel_tx::writer_for(port) {
                    q.set_tunnel_tx(tx);
                }
                qs.push(Box::new(q));
            }
            let note = format!(
                "port {}: af_packet on {} with {workers} fanout sockets (group {group})",
                port.name, port.ifname
            );
            Ok((qs, note))
        }
    }
}

/// Removes what [`open_port`] created for a port that is being deleted: a
/// TAP placed in a pod is deleted there (it is persistent); a TAP in the
/// node namespace stops being persistent, so it goes with its last queue.
pub fn remove_port(snapshot: &Snapshot, port: &PortSpec) -> Result<()> {
    if port.kind != PortKind::Tap {
        return Ok(());
    }
    match placement(snapshot, port) {
        Some(p) => tap::delete_pod_tap(&p).map(drop).with_context(|| {
            format!(
                "port {}: delete TAP {} in {}",
                port.name,
                p.ifname,
                p.netns.display()
            )
        }),
        None => {
            let opts = TapOptions {
                queues: 1,
                offload: port.offload,
                persist: false,
            };
            // Attaching with persist off makes the device go when this queue closes.
            let _ = tap::attach_tap(&port.ifname, &opts);
            Ok(())
        }
    }
}

/// Where the host's `/proc` is mounted when podswitchd has a PID namespace
/// of its own (`--host-proc`); set once at start.
static HOST_PROC: OnceLock<PathBuf> = OnceLock::new();

/// Sets the host's `/proc` mount (`--host-proc`); only the first call counts.
pub fn set_host_proc(dir: PathBuf) {
    let _ = HOST_PROC.set(dir);
}

/// The path podswitchd opens for a pod's network namespace given as
/// `netns`: a runtime's `/proc/PID/ns/net` (PID in the host's PID
/// namespace) becomes `HOST_PROC/PID/ns/net` when the host's `/proc` is
/// mounted there; anything else (`/run/netns/NAME`, `/proc/self/...`)
/// stays. The port keeps the path as given.
pub fn host_netns_path(netns: &Path, host_proc: Option<&Path>) -> PathBuf {
    let Some(host_proc) = host_proc else {
        return netns.to_path_buf();
    };
    let Ok(rest) = netns.strip_prefix("/proc") else {
        return netns.to_path_buf();
    };
    let pid = rest
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str());
    match pid {
        Some(pid) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            host_proc.join(rest)
        }
        _ => netns.to_path_buf(),
    }
}

/// The pod-side settings of a TAP port placed into a pod namespace.
pub fn placement(snapshot: &Snapshot, port: &PortSpec) -> Option<PodPlacement> {
    let netns = host_netns_path(
        port.netns.as_deref()?,
        HOST_PROC.get().map(PathBuf::as_path),
    );
    let gw = snapshot.gateway.address;
    Some(PodPlacement {
        netns,
        ifname: port.pod_ifname.clone(),
        mac: port.mac.unwrap_or_else(|| derived_mac(&port.name)),
        mtu: port.mtu,
        addresses: port.ips.iter().map(|ip| (*ip, gw.prefix_len)).collect(),
        gateway: Some(gw.addr),
        routes: Vec::new(),
    })
}

fn open_tap(
    snapshot: &Snapshot,
    port: &PortSpec,
    workers: usize,
) -> Result<(Vec<tap::TapQueue>, TapOutcome)> {
    let opts = TapOptions {
        queues: workers,
        offload: port.offload,
        persist: true,
    };
    let Some(placement) = placement(snapshot, port) else {
        if let Ok(qs) = tap::attach_tap(&port.ifname, &opts) {
            return Ok((qs, TapOutcome::Reattached));
        }
        let qs = tap::create_tap(&port.ifname, &opts)
            .with_context(|| format!("port {}: TAP {}", port.name, port.ifname))?;
        return Ok((qs, TapOutcome::Created));
    };
    if let Ok(qs) = tap::attach_pod_tap(&opts, &placement) {
        // The node's addressing may have changed while the daemon was down
        // (or just before it stopped): the pod follows it.
        match tap::sync_pod_addressing(&placement) {
            Ok(true) => {
                tracing::info!(port = %port.name, gateway = ?placement.gateway, addresses = ?placement.addresses, "pod interface re-addressed")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(port = %port.name, error = %format!("{:#}", anyhow::Error::new(e)), "cannot re-address the pod's interface")
            }
        }
        return Ok((qs, TapOutcome::Reattached));
    }
    remove_half_made(port, &placement);
    let qs = tap::create_pod_tap(&port.ifname, &opts, &placement).with_context(|| {
        format!(
            "port {}: TAP {} into {}",
            port.name,
            placement.ifname,
            placement.netns.display()
        )
    })?;
    Ok((qs, TapOutcome::Created))
}

/// Removes what a crash while `port`'s TAP was being placed may have left:
/// the TAP under its node-side name in the node's namespace (made, not yet
/// moved) or in the pod's (moved, not yet renamed). A placed TAP is never
/// found under that name, so such a device is a leftover of this port.
fn remove_half_made(port: &PortSpec, placement: &PodPlacement) {
    let in_pod = PodPlacement {
        ifname: port.ifname.clone(),
        ..placement.clone()
    };
    let removed = [
        ("the node's namespace", tap::delete_tap(&port.ifname)),
        ("the pod's namespace", tap::delete_pod_tap(&in_pod)),
    ];
    for (place, outcome) in removed {
        match outcome {
            Ok(true) => {
                tracing::info!(port = %port.name, tap = %port.ifname, "removed a half-made TAP from {place}")
            }
            // No pod namespace: the creation that follows says so.
            Ok(false) | Err(tap::TapError::Netns { .. }) => {}
            Err(e) => {
                tracing::warn!(port = %port.name, tap = %port.ifname, error = %e, "cannot remove a leftover TAP from {place}")
            }
        }
    }
}

/// A stable locally administered MAC for a port without one.
fn derived_mac(name: &str) -> MacAddr {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    MacAddr([0x02, 0x50, b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::host_netns_path;
    use std::path::{Path, PathBuf};

    #[test]
    fn a_pids_netns_is_opened_through_the_hosts_proc() {
        let host = Some(Path::new("/host/proc"));
        let path = |p: &str| host_netns_path(Path::new(p), host);
        assert_eq!(
            path("/proc/4242/ns/net"),
            PathBuf::from("/host/proc/4242/ns/net")
        );
        assert_eq!(
            path("/proc/4242/task/4243/ns/net"),
            PathBuf::from("/host/proc/4242/task/4243/ns/net")
        );
        for unchanged in [
            "/run/netns/cni-1234",
            "/var/run/netns/pod-a",
            "/proc/self/ns/net",
            "/proc/thread-self/ns/net",
            "/proc",
            "/procfs/12/ns/net",
            "/host/proc/12/ns/net",
        ] {
            assert_eq!(path(unchanged), PathBuf::from(unchanged), "{unchanged}");
        }
        assert_eq!(
            host_netns_path(Path::new("/proc/4242/ns/net"), None),
            PathBuf::from("/proc/4242/ns/net"),
            "without --host-proc nothing changes"
        );
    }
}
