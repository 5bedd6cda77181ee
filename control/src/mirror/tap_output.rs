//! The mirror interface: a TAP in the daemon's netns that the copies are
//! written to, so `tcpdump -i psmirror0` and `tshark -i psmirror0` see them.
//!
//! Frames written to a TAP enter the kernel's receive path, so the device
//! is set up for the kernel to ignore them: no address, ARP off
//! (`IFF_NOARP`), IPv6 disabled (no link-local address, no ND), and a tc
//! ingress `matchall` drop. Packet sockets (tcpdump) see a frame before tc
//! ingress, so the capture tools still get every copy while IP never does.
//! The TAP is not persistent: it goes away with the daemon (and is made
//! again on start from the stored mirror).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use podswitch_dataplane::io::{PortQueue, Rtnetlink, TapError, TapOptions, TapQueue, create_tap};
use podswitch_dataplane::mirror::{MAX_SNAPLEN, Session};
use podswitch_dataplane::packet::Frame;

use crate::error::ControlError;

/// How long the writer sleeps when its queue is empty.
const IDLE_SLEEP: Duration = Duration::from_millis(1);

/// One mirror interface and its writer thread.
pub struct TapOutput {
    session: Arc<Session>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl TapOutput {
    /// Creates TAP `iface`, makes the kernel ignore it, and starts writing
    /// `session`'s copies to it.
    pub fn open(iface: &str, session: Arc<Session>) -> Result<TapOutput, ControlError> {
        let opts = TapOptions {
            queues: 1,
            offload: false,
            persist: false,
        };
        let mut queues = create_tap(iface, &opts).map_err(|e| match e {
            TapError::AlreadyExists(_) => ControlError::Exists {
                field: "iface",
                value: iface.to_string(),
                kind: "network device",
                key: "with this name",
            },
            e => ControlError::Device(format!(
                "iface = {iface}: cannot create the TAP: {}",
                chain(&e)
            )),
        })?;
        let tap = queues
            .pop()
            .ok_or_else(|| ControlError::Internal("TAP without a queue".into()))?;
        quiet_kernel(iface).map_err(|e| {
            ControlError::Internal(format!("iface = {iface}: cannot set the TAP up: {e}"))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, errors, session) =
                (Arc::clone(&stop), Arc::clone(&errors), Arc::clone(&session));
            std::thread::Builder::new()
                .name(format!("ps-mirror-{iface}"))
                .spawn(move || write_loop(tap, &session, &stop, &errors))
                .map_err(|e| {
                    ControlError::Internal(format!("cannot start the mirror writer: {e}"))
                })?
        };
        tracing::info!(iface, session = session.name(), "mirror interface created");
        Ok(TapOutput {
            session,
            stop,
            errors,
            thread: Some(thread),
        })
    }

    /// The session this output drains.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The count of frames the TAP refused.
    pub fn write_errors(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.errors)
    }

    /// Stops the writer; the TAP disappears with its queue.
    pub fn close(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TapOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

/// IPv6 off, tc ingress drop, then up with ARP off.
fn quiet_kernel(iface: &str) -> Result<(), String> {
    let ipv6 = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    if let Err(e) = std::fs::write(&ipv6, "1")
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(format!("writing {ipv6}: {e}"));
    }
    tc_ingress_drop(iface);
    let mut nl = Rtnetlink::open().map_err(|e| chain(&e))?;
    let index = nl.link_index(iface).map_err(|e| chain(&e))?;
    // Copies of GSO super-frames are longer than a usual MTU (the TAP maximum is 65535 - 14).
    nl.link_set_mtu(index, 65_521).map_err(|e| chain(&e))?;
    nl.link_set_up_noarp(index).map_err(|e| chain(&e))
}

/// `tc qdisc add dev IF clsact`, then an ingress filter that drops every
/// frame: a one-instruction classic BPF program in direct-action mode
/// (`ret #TC_ACT_SHOT`; cls_bpf is common where the matchall classifier or
/// the gact action are not built), or else `matchall action drop`. Without
/// tc (iproute2) the other measures still keep IP away from unicast copies;
/// the failure is logged.
fn tc_ingress_drop(iface: &str) {
    let tc = |args: &[&str]| -> Result<(), String> {
        match std::process::Command::new("tc").args(args).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => Err(format!("cannot run tc: {e}")),
        }
    };
    let result = tc(&["qdisc", "add", "dev", iface, "clsact"]).and_then(|()| {
        tc(&[
            "filter",
            "add",
            "dev",
            iface,
            "ingress",
            "bpf",
            "da",
            "bytecode",
            "1,6 0 0 2",
        ])
        .or_else(|first| {
            tc(&[
                "filter", "add", "dev", iface, "ingress", "matchall", "action", "drop",
            ])
            .map_err(|second| format!("{first}; {second}"))
        })
    });
    if let Err(error) = result {
        tracing::warn!(iface, %error, "tc ingress drop on the mirror interface failed");
    }
}

/// Drains the session's queue into the TAP until stopped.
fn write_loop(mut tap: TapQueue, session: &Session, stop: &AtomicBool, errors: &AtomicU64) {
    let queue = session.queue();
    let mut frame = Frame::with_capacity(MAX_SNAPLEN as usize);
    while !stop.load(Ordering::Acquire) {
        let mut idle = true;
        while let Some(record) = queue.pop() {
            idle = false;
            if !frame.fill(record.data()) || tap.send(&frame).is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            queue.recycle(record);
        }
        if idle {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
    // Dropping the only queue of a non-persistent TAP removes the device.
    drop(tap);
}
