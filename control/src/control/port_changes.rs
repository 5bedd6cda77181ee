//! Adding and deleting ports, in the order that survives a crash at any
//! point: the stored state says which ports exist, and a start makes the
//! devices of the stored ports (re-attaching the persistent TAPs, making
//! the missing ones). So an add stores the port before it makes the device
//! (and takes the record back if the device cannot be made), and a delete
//! removes the device before the record: a crash in between leaves a
//! stored port whose TAP the next start makes, never a TAP in a pod that
//! nothing tracks. A crash inside the device's creation can leave a
//! half-made TAP; the next start removes it ([`crate::ports`]).
//!
//! `PODSWITCH_CRASH_AT=port-add` or `port-delete` makes the daemon abort
//! between the two steps, `port-added` once a port is added but before the
//! answer, `node-set` once new node addressing is stored but before the
//! pods are re-addressed: the test hooks of `tests/tests/port_crashes.rs`,
//! `cni_live.rs` and `node_readdress.rs`.

use podswitch_dataplane::config::{PortSection, Snapshot};
use podswitch_dataplane::io::tap;
use podswitch_dataplane::worker::WorkerCommand;

use super::commit::Candidate;
use super::{Control, conflicts};
use crate::error::ControlError;
use crate::ports;
use crate::validate::check_name;

impl Control {
    /// `POST /v1/ports`.
    pub fn add_port(&mut self, port: PortSection) -> Result<u64, ControlError> {
        check_name("name", &port.name)?;
        if self.port_names().contains(&port.name) {
            return Err(ControlError::exists("port", &port.name));
        }
        conflicts::check_new_port(&port, &self.snapshot(), self.state().services.values())?;
        let mut candidate = self.state().clone();
        candidate.ports.insert(port.name.clone(), port.clone());
        let prepared = self
            .prepare(Candidate::state(candidate))
            .map_err(|e| e.within_item("ports"))?;
        let snapshot = prepared.snapshot();
        let spec = snapshot
            .port_by_name(&port.name)
            .cloned()
            .ok_or_else(|| ControlError::Internal("port vanished".into()))?;
        if let Some(other) = snapshot
            .ports
            .iter()
            .find(|p| p.name != spec.name && p.ifname == spec.ifname)
        {
            return Err(ControlError::taken(
                "ifname",
                &spec.ifname,
                format!("used by port {}", other.name),
            ));
        }
        self.store_prepared(&prepared)?;
        crash_point("port-add");
        let workers = self.workers.len().max(1);
        let opened = ports::open_port(prepared.snapshot(), &spec, workers, self.fanout_base);
        let (queues, note) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let undo = match prepared.whole_state() {
                    Some(candidate) => self.store.commit_diff(candidate, &self.state()),
                    None => Ok(()),
                };
                if let Err(undo) = undo {
                    // The next start finds the port and cannot open it either: it is down there.
                    tracing::error!(port = %spec.name, error = %undo, "a port whose device failed stays stored");
                }
                return Err(ControlError::Device(format!("{e:#}")));
            }
        };
        let generation = self.publish(prepared);
        tracing::info!("{note} (added through the API)");
        self.view.port_states().set_up(spec.id);
        for (tx, q) in self.workers.iter().zip(queues) {
            let _ = tx.send(WorkerCommand::AddQueue(spec.id, q));
        }
        crash_point("port-added");
        Ok(generation)
    }

    /// `DELETE /v1/ports/{name}`.
    pub fn delete_port(&mut self, name: &str) -> Result<(), ControlError> {
        let old = self.snapshot();
        let Some(spec) = old.port_by_name(name).cloned() else {
            return Err(ControlError::not_found("port", name));
        };
        if !self.state().ports.contains_key(name) {
            return Err(ControlError::FromConfigFile {
                kind: "port",
                name: name.to_string(),
            });
        }
        if self
            .state()
            .mirrors
            .values()
            .any(|m| m.ports.iter().any(|p| p == name))
        {
            return Err(ControlError::InUse {
                kind: "port",
                name: name.to_string(),
                user: "a mirror session",
            });
        }
        let mut candidate = self.state().clone();
        candidate.ports.remove(name);
        let prepared = self.prepare(Candidate::state(candidate))?;
        for tx in &self.workers {
            let _ = tx.send(WorkerCommand::RemoveQueue(spec.id));
        }
        if let Err(e) = ports::remove_port(&old, &spec) {
            tracing::warn!(port = name, error = %format!("{e:#}"), "device cleanup failed; the port is removed all the same");
        }
        crash_point("port-delete");
        if let Err(e) = self.finish(prepared) {
            // Still stored, its device gone: down until it is deleted again.
            self.view.port_states().set_down(
                spec.id,
                format!("its device was removed, but not its record: {e}"),
            );
            return Err(e);
        }
        self.view.port_states().set_up(spec.id);
        Ok(())
    }
}

impl Control {
    /// Brings the pods' interfaces placed under `old` to the addressing of
    /// the snapshot in use (a new gateway address, prefix or pod MTU). A
    /// pod that cannot be reached is logged and left as it is: the change
    /// itself is stored and in force (and a start applies it to the TAPs it
    /// re-attaches, should the daemon stop before it is done here).
    pub(super) fn readdress_pods(&self, old: &Snapshot) {
        crash_point("node-set");
        let new = self.snapshot();
        for port in &new.ports {
            let Some(old_port) = old.port_by_name(&port.name) else {
                continue;
            };
            let (Some(from), Some(to)) = (
                ports::placement(old, old_port),
                ports::placement(&new, port),
            ) else {
                continue;
            };
            if from == to || self.view.port_states().down_reason(port.id).is_some() {
                continue;
            }
            match tap::sync_pod_addressing(&to) {
                Ok(_) => {
                    tracing::info!(port = %port.name, gateway = ?to.gateway, addresses = ?to.addresses, "pod interface re-addressed")
                }
                Err(e) => {
                    let error = format!("{:#}", anyhow::Error::new(e));
                    tracing::warn!(port = %port.name, %error, "cannot re-address the pod's interface");
                }
            }
        }
    }
}

/// Test hook: aborts the process at `point` when `PODSWITCH_CRASH_AT` names it.
fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("PODSWITCH_CRASH_AT").ok())
        .as_deref()
        == Some(point)
    {
        std::process::abort();
    }
}
