//! How VXLAN super-frames leave the node: whole, through the overlay's
//! transmit TAP (UDP-tunnel GSO, Linux 6.17+), or cut into segments in
//! software by the workers.
//!
//! [`setup`] runs once at start, before the ports open: with an overlay and
//! an AF_PACKET uplink it creates the transmit TAP
//! ([`podswitch_dataplane::io::TunnelTxDevice`], the capability probe) and
//! steers everything written into it out of the uplink with an nftables
//! `netdev` ingress chain (`fwd to`), one chain per TAP in the table
//! `netdev podswitch_tx` (a takeover's new process has its own TAP while
//! the old one still sends). The TAP is not persistent: it goes with the
//! process. `podswitchd host-cleanup` removes the table. When any step
//! fails (an older kernel, no nft), the log says so and why, and the
//! workers segment in software as before; the counters
//! `vxlan_gso_sent_whole` and `vxlan_gso_segmented` show which path runs.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use podswitch_dataplane::config::{PortKind, PortSpec, Snapshot};
use podswitch_dataplane::io::{TunnelTx, TunnelTxDevice};

use crate::host::TUNNEL_TX_TABLE as TABLE;

/// Whether to try sending super-frames whole (`podswitchd run --tunnel-gso`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TunnelGso {
    /// Use the transmit TAP where the kernel has UDP-tunnel GSO in tun.
    #[default]
    Auto,
    /// Always segment in software.
    Off,
}

/// The transmit TAP, once [`setup`] made it (`None`: software segmentation).
static DEVICE: OnceLock<Option<Uplinked>> = OnceLock::new();

/// The transmit TAP and the uplink interface its frames are sent out of.
struct Uplinked {
    device: TunnelTxDevice,
    uplink: String,
}

/// Decides how super-frames leave (see the module documentation) and logs
/// it. Only the first call counts.
pub fn setup(snapshot: &Snapshot, mode: TunnelGso) {
    DEVICE.get_or_init(|| {
        let uplink = snapshot.overlay.as_ref().and_then(|_| {
            snapshot
                .ports
                .iter()
                .find(|p| p.is_uplink && p.kind == PortKind::Afpacket && p.offload)
        })?;
        if mode == TunnelGso::Off {
            tracing::info!(
                "overlay transmit: super-frames segmented in software (--tunnel-gso off)"
            );
            return None;
        }
        match open(&uplink.ifname) {
            Ok(device) => {
                tracing::info!(
                    tap = device.name(),
                    uplink = %uplink.ifname,
                    "overlay transmit: super-frames sent whole (UDP-tunnel GSO through a transmit TAP)"
                );
                Some(Uplinked {
                    device,
                    uplink: uplink.ifname.clone(),
                })
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "overlay transmit: super-frames segmented in software: no UDP-tunnel GSO");
                None
            }
        }
    });
}

/// Creates the transmit TAP and its redirect to `uplink`.
fn open(uplink: &str) -> Result<TunnelTxDevice> {
    let device = TunnelTxDevice::create().context("transmit TAP")?;
    crate::host::nft(&redirect_rules(device.name(), uplink))
        .with_context(|| format!("redirecting {} to {uplink}", device.name()))?;
    Ok(device)
}

/// The nftables script that sends every frame arriving on `tap` out of
/// `uplink`, and nothing of it into the node's stack.
fn redirect_rules(tap: &str, uplink: &str) -> String {
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} {tap} {{ type filter hook ingress device \"{tap}\" priority 0; policy drop; }}\n\
         flush chain {TABLE} {tap}\n\
         add rule {TABLE} {tap} fwd to \"{uplink}\"\n"
    )
}

/// A writer of the transmit TAP for one worker's queue of `port`, when the
/// port is the uplink it sends out of.
pub fn writer_for(port: &PortSpec) -> Option<TunnelTx> {
    let uplinked = DEVICE.get()?.as_ref()?;
    if !port.is_uplink || port.ifname != uplinked.uplink {
        return None;
    }
    match uplinked.device.writer() {
        Ok(writer) => Some(writer),
        Err(e) => {
            tracing::warn!(error = %e, port = %port.name, "overlay transmit: no transmit TAP writer; this queue segments in software");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_sends_the_tap_out_of_the_uplink_only() {
        let rules = redirect_rules("pstx0", "eth0");
        for line in [
            "add table netdev podswitch_tx",
            "add chain netdev podswitch_tx pstx0 { type filter hook ingress device \"pstx0\" priority 0; policy drop; }",
            "flush chain netdev podswitch_tx pstx0",
            "add rule netdev podswitch_tx pstx0 fwd to \"eth0\"",
        ] {
            assert!(rules.contains(line), "{line} missing from\n{rules}");
        }
    }
}
