//! Which ports are down, and why.
//!
//! A port is down when its device could not be opened at start (a pod
//! whose network namespace is gone) or vanished while the daemon ran (a TAP
//! deleted under its queues). The other ports keep forwarding; frames
//! toward a down port are dropped as `tx_error`. The control plane marks
//! the first kind, a worker the second; both only on those rare events,
//! never per packet, so a mutex is all the sharing needs.
//!
//! ```
//! use podswitch_dataplane::io::PortStates;
//! use podswitch_dataplane::packet::PortId;
//!
//! let states = PortStates::default();
//! assert!(states.set_down(PortId(3), "TAP deleted"));
//! assert!(!states.set_down(PortId(3), "TAP deleted"), "only the first report counts");
//! assert_eq!(states.down_reason(PortId(3)).as_deref(), Some("TAP deleted"));
//! assert_eq!(states.take_unreported().len(), 1);
//! assert!(states.take_unreported().is_empty(), "each is reported once");
//! states.set_up(PortId(3));
//! assert!(states.down().is_empty());
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::packet::PortId;

/// The down ports with their reasons; every other port is up.
#[derive(Debug, Default)]
pub struct PortStates {
    down: Mutex<BTreeMap<PortId, Down>>,
}

/// One down port.
#[derive(Debug)]
struct Down {
    reason: String,
    /// Given out by [`PortStates::take_unreported`] already.
    reported: bool,
}

impl PortStates {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<PortId, Down>> {
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `port` down for `reason`. Returns false when it was down
    /// already (the first reason stays), so only the first reporter logs.
    pub fn set_down(&self, port: PortId, reason: impl Into<String>) -> bool {
        let mut map = self.map();
        if map.contains_key(&port) {
            return false;
        }
        let reason = reason.into();
        map.insert(
            port,
            Down {
                reason,
                reported: false,
            },
        );
        true
    }

    /// Marks `port` up (a new port on this id, or one deleted).
    pub fn set_up(&self, port: PortId) {
        self.map().remove(&port);
    }

    /// Why `port` is down, or `None` when it is up.
    pub fn down_reason(&self, port: PortId) -> Option<String> {
        self.map().get(&port).map(|d| d.reason.clone())
    }

    /// Every down port with its reason, by id.
    pub fn down(&self) -> Vec<(PortId, String)> {
        self.map()
            .iter()
            .map(|(port, d)| (*port, d.reason.clone()))
            .collect()
    }

    /// The ports gone down since the last call, with their reasons: the
    /// control plane logs each once (workers do not log).
    pub fn take_unreported(&self) -> Vec<(PortId, String)> {
        self.map()
            .iter_mut()
            .filter(|(_, d)| !d.reported)
            .map(|(port, d)| {
                d.reported = true;
                (*port, d.reason.clone())
            })
            .collect()
    }
}
