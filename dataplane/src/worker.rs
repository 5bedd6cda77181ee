//! Worker threads: poll the queues a worker owns, run batches through its
//! pipeline, send the verdicts' frames out.
//!
//! A worker owns one [`PortQueue`] per port (a TAP queue or an AF_PACKET
//! fanout socket) and its [`Pipeline`]; nothing on the per-packet path is
//! shared but the read-mostly tables inside the pipeline. The configuration
//! is re-read once per batch from an [`ArcSwap`] (a pointer load; the new
//! snapshot is taken only when its generation moved). Frames the output
//! cannot take as they are (a GSO super-frame or a partial checksum toward a
//! port without offloads) are segmented and completed in software first; an
//! IPv4 packet without DF longer than the output port's MTU is sent in
//! fragments (`io::fragment`). A VXLAN super-frame leaves the uplink whole
//! through the overlay's transmit TAP (`io::tap::tunnel_tx`) where the
//! kernel has one, and is cut per segment in software otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Snapshot;
use crate::io::poll::PollSet;
use crate::io::vnet;
use crate::io::{PortQueue, PortStates};
use crate::mirror::{MirrorNote, MirrorStage};
use crate::packet::{
    Batch, DropReason, Event, Frame, GsoKind, MAX_FRAME_LEN, PortId, Verdict, WorkerCounters,
};
use crate::pipeline::{Pipeline, SharedTables};

/// How long a worker sleeps in `poll` at most: bounds shutdown latency and
/// how late timers (ARP retries, aging) run when no traffic comes.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// How often a worker reads its devices' receive drops into its counters
/// (a syscall per AF_PACKET queue, so not per batch).
pub const DEVICE_DROPS_INTERVAL: Duration = Duration::from_millis(250);

/// A change to the queues a worker owns, sent while it runs (a port was
/// added or removed through the control API).
pub enum WorkerCommand {
    /// Start polling and sending on this queue for this port.
    AddQueue(PortId, Box<dyn PortQueue>),
    /// Stop using (and drop) the queue of this port.
    RemoveQueue(PortId),
}

/// Everything a worker is built from.
pub struct WorkerSetup {
    /// Worker number, for names and logs.
    pub id: usize,
    /// This worker's queue for each port, by port id (`None`: no queue).
    pub queues: Vec<Option<Box<dyn PortQueue>>>,
    /// The published configuration.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// Tables shared with the other workers.
    pub shared: Arc<SharedTables>,
    /// Set to stop the worker; it exits within [`POLL_TIMEOUT`] plus one batch.
    pub stop: Arc<AtomicBool>,
    /// Common time origin of all workers (pipeline timestamps compare across workers).
    pub epoch: Instant,
    /// After traffic, keep polling without sleeping for this long before
    /// blocking in `poll` again (0: always block). Trades CPU for latency:
    /// a sleeping worker costs a wake-up per packet at low rates.
    pub busy_poll: Duration,
    /// Queue changes while running (`None`: the queues never change).
    pub commands: Option<Receiver<WorkerCommand>>,
    /// Where a port whose device vanished is marked down.
    pub port_states: Arc<PortStates>,
}

/// One worker: its pipeline, queues and buffers.
pub struct Worker {
    id: usize,
    pipeline: Pipeline,
    queues: Vec<Option<Box<dyn PortQueue>>>,
    /// (port, index into `queues`) in poll-set order.
    polled: Vec<PortId>,
    poll: PollSet,
    snapshots: Arc<ArcSwap<Snapshot>>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    batch: Batch,
    scratch: Frame,
    /// Where a segment too long for its port is cut into fragments.
    fragment_scratch: Frame,
    dirty: Vec<bool>,
    busy_poll_ns: u64,
    commands: Option<Receiver<WorkerCommand>>,
    port_states: Arc<PortStates>,
}

impl Worker {
    /// Builds a worker; its buffers are allocated here, never later.
    pub fn new(setup: WorkerSetup) -> Worker {
        let snapshot = setup.snapshots.load_full();
        let pipeline = Pipeline::new(snapshot, setup.shared, MAX_FRAME_LEN);
        let (polled, poll) = poll_set(&setup.queues);
        let dirty = vec![false; setup.queues.len()];
        Worker {
            id: setup.id,
            pipeline,
            queues: setup.queues,
            polled,
            poll,
            snapshots: setup.snapshots,
            stop: setup.stop,
            epoch: setup.epoch,
            batch: Batch::new(MAX_FRAME_LEN),
            scratch: Frame::with_capacity(MAX_FRAME_LEN),
            fragment_scratch: Frame::with_capacity(MAX_FRAME_LEN),
            dirty,
            busy_poll_ns: u64::try_from(setup.busy_poll.as_nanos()).unwrap_or(u64::MAX),
            commands: setup.commands,
            port_states: setup.port_states,
        }
    }

    /// Descriptors of this worker's queues that can be handed to a
    /// process taking over, by port (after [`run`](Self::run) returned).
    pub fn handover_fds(&self) -> Vec<(PortId, std::os::fd::OwnedFd)> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                let fd = q.as_ref()?.handover_fd()?;
                Some((PortId(u16::try_from(i).ok()?), fd))
            })
            .collect()
    }

    /// This worker's counters (read them from any thread).
    pub fn counters(&self) -> Arc<WorkerCounters> {
        self.pipeline.counters().clone()
    }

    /// Worker number.
    pub fn id(&self) -> usize {
        self.id
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> std::io::Result<()> {
        let timeout = i32::try_from(POLL_TIMEOUT.as_millis()).unwrap_or(50);
        let mut last_timer_run = 0u64;
        let mut last_traffic = 0u64;
        let mut last_device_read = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            self.apply_commands();
            let spinning = self.now().saturating_sub(last_traffic) < self.busy_poll_ns;
            let ready = self.poll.wait(if spinning { 0 } else { timeout })?;
            if spinning && ready == 0 {
                // Stay on the CPU only while nobody else wants it (the pods'
                // own threads share these cores).
                std::thread::yield_now();
            }
            self.refresh_snapshot();
            let mut processed = false;
            for i in 0..self.polled.len() {
                // A queue dropped on the way rebuilds the poll set (with no
                // readiness yet): the rest waits for the next round.
                let Some(&port) = self.polled.get(i) else {
                    break;
                };
                if ready > 0 && self.poll.has_error(i) {
                    self.take_queue_error(port);
                }
                if ready > 0 && self.poll.is_ready(i) {
                    processed |= self.drain_queue(port);
                }
            }
            let now = self.now();
            if !processed && now.saturating_sub(last_timer_run) >= POLL_TIMEOUT.as_nanos() as u64 {
                // Idle: let timers (ARP retries, held packets, aging) run.
                self.batch.clear();
                self.pipeline.process(&mut self.batch, now);
                self.transmit();
                last_timer_run = now;
            }
            if processed {
                last_timer_run = now;
                last_traffic = now;
            }
            self.flush();
            if now.saturating_sub(last_device_read) >= DEVICE_DROPS_INTERVAL.as_nanos() as u64 {
                self.read_all_device_drops();
                last_device_read = now;
            }
        }
        self.read_all_device_drops();
        Ok(())
    }

    fn read_all_device_drops(&mut self) {
        for i in 0..self.polled.len() {
            if let Some(&port) = self.polled.get(i) {
                self.read_device_drops(port);
            }
        }
    }

    /// Adds what `port`'s queue lost on receive since the last read to the
    /// port's counters.
    fn read_device_drops(&mut self, port: PortId) {
        if let Some(Some(queue)) = self.queues.get_mut(usize::from(port.0)) {
            count_device_drops(queue.as_mut(), self.pipeline.counters(), port);
        }
    }

    /// Polls and sends on `queue` for `port` from now on (before
    /// [`run`](Self::run): a process taking over adds the queues handed to
    /// it once the workers are built).
    pub fn add_queue(&mut self, port: PortId, queue: Box<dyn PortQueue>) {
        self.put_queue(port, queue);
        (self.polled, self.poll) = poll_set(&self.queues);
    }

    fn put_queue(&mut self, port: PortId, queue: Box<dyn PortQueue>) {
        let i = usize::from(port.0);
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, || None);
            self.dirty.resize(i + 1, false);
        }
        if let Some(slot) = self.queues.get_mut(i) {
            *slot = Some(queue);
        }
    }

    /// Takes queue changes from the control plane (between batches only).
    fn apply_commands(&mut self) {
        let mut changed = false;
        while let Some(command) = self.commands.as_ref().and_then(|c| c.try_recv().ok()) {
            match command {
                WorkerCommand::AddQueue(port, queue) => self.put_queue(port, queue),
                WorkerCommand::RemoveQueue(port) => {
                    let slot = self.queues.get_mut(usize::from(port.0));
                    if let Some(mut queue) = slot.and_then(Option::take) {
                        count_device_drops(queue.as_mut(), self.pipeline.counters(), port);
                    }
                }
            }
            changed = true;
        }
        if changed {
            (self.polled, self.poll) = poll_set(&self.queues);
        }
    }

    fn refresh_snapshot(&mut self) {
        let current = self.snapshots.load();
        if current.generation != self.pipeline.snapshot().generation {
            self.pipeline.set_snapshot(Arc::clone(&current));
        }
    }

    /// Reads and processes batches from one queue until it is empty (at most
    /// a few batches, so one busy port cannot starve the others).
    fn drain_queue(&mut self, port: PortId) -> bool {
        let mut any = false;
        for _ in 0..4 {
            self.batch.clear();
            let now = self.now();
            let Some(Some(queue)) = self.queues.get_mut(usize::from(port.0)) else {
                return any;
            };
            match queue.recv_batch(&mut self.batch, port, now) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    if let Some(c) = self.pipeline.counters().port(port) {
                        c.rx_errors.inc();
                    }
                    if let Some(why) = queue.device_gone(&e) {
                        self.drop_gone_queue(port, why, &e);
                    }
                    break;
                }
            }
            any = true;
            self.pipeline.process(&mut self.batch, now);
            self.transmit();
            if self.batch.rx_len() < self.batch.rx_capacity() {
                break;
            }
        }
        any
    }

    /// Reads the error `port`'s queue polled with, if reading it would not:
    /// counted as a receive error, and the queue dropped if its device is gone.
    #[cold]
    fn take_queue_error(&mut self, port: PortId) {
        let Some(Some(queue)) = self.queues.get_mut(usize::from(port.0)) else {
            return;
        };
        let Some(error) = queue.take_error() else {
            return;
        };
        let gone = queue.device_gone(&error);
        if let Some(c) = self.pipeline.counters().port(port) {
            c.rx_errors.inc();
        }
        if let Some(why) = gone {
            self.drop_gone_queue(port, why, &error);
        }
    }

    /// Stops using the queue of `port`, whose device is gone (it would
    /// poll ready forever), and marks the port down; the control plane
    /// logs it. Rare: the poll set is rebuilt here.
    #[cold]
    fn drop_gone_queue(&mut self, port: PortId, why: &str, error: &std::io::Error) {
        self.read_device_drops(port);
        if let Some(slot) = self.queues.get_mut(usize::from(port.0)) {
            *slot = None;
        }
        (self.polled, self.poll) = poll_set(&self.queues);
        let reason = format!("its device is gone: {why} (reading it: {error})");
        self.port_states.set_down(port, reason);
    }

    /// Sends every frame of the batch per its verdict.
    fn transmit(&mut self) {
        let snapshot = Arc::clone(self.pipeline.snapshot());
        for i in 0..self.batch.len() {
            let Some((frame, verdict)) = self.batch.get(i) else {
                break;
            };
            match verdict {
                Verdict::Forward(port) => self.send(port, i),
                Verdict::Flood => {
                    let in_port = frame.in_port;
                    for &port in snapshot.bridge_ports.iter().filter(|&&p| p != in_port) {
                        self.send(port, i);
                    }
                }
                Verdict::Drop(_) | Verdict::Consumed | Verdict::Held => {}
            }
        }
    }

    /// Sends frame `i` of the batch out of `port`, in software-offloaded
    /// segments if the queue cannot take the frame's offload state.
    fn send(&mut self, port: PortId, i: usize) {
        if self.too_long_for(port, i) {
            self.send_cut(port, i);
            return;
        }
        let counters = self.pipeline.counters();
        let Some((frame, _)) = self.batch.get(i) else {
            return;
        };
        let Some(Some(queue)) = self.queues.get_mut(usize::from(port.0)) else {
            counters.count_drop(DropReason::TxError);
            mirror_sent(&self.pipeline, port, frame.in_port, frame.data(), false);
            return;
        };
        self.dirty[usize::from(port.0)] = true;
        if frame.encap_len > 0 {
            // A VXLAN-encapsulated super-frame: whole through tunnel GSO
            // where the uplink can, else each segment with its own outer headers.
            if frame.offload.gso != GsoKind::None
                && queue.sends_tunnel_gso()
                && send_whole(frame, &mut **queue, counters, port)
            {
                return;
            }
            let snapshot = self.pipeline.snapshot();
            let mtu = snapshot
                .port(port)
                .map_or(usize::MAX, |p| usize::from(p.mtu));
            send_encapsulated(
                frame,
                &mut **queue,
                &mut self.scratch,
                counters,
                (port, mtu),
            );
            return;
        }
        if frame.offload.needs_software() && !queue.accepts_offload() {
            let pipeline = &self.pipeline;
            send_in_software(frame, &mut **queue, &mut self.scratch, pipeline, port);
            return;
        }
        let sent = queue.send(frame);
        match sent {
            Ok(()) => counters.tx(port, frame.len()),
            Err(_) => counters.count_drop(DropReason::TxError),
        }
        mirror_sent(
            &self.pipeline,
            port,
            frame.in_port,
            frame.data(),
            sent.is_ok(),
        );
    }

    /// True when frame `i` is longer on the wire than `port`'s MTU (a GSO
    /// super-frame: its segments; an encapsulated one is cut to the
    /// uplink's MTU by `segment_encapsulated`).
    #[inline]
    fn too_long_for(&self, port: PortId, i: usize) -> bool {
        let Some((frame, _)) = self.batch.get(i) else {
            return false;
        };
        // No port's MTU is below 576: shorter frames skip the port lookup.
        frame.len() > crate::wire::ethernet::HEADER_LEN + 576
            && frame.encap_len == 0
            && crate::io::egress_mtu::exceeds(frame, self.mtu(port))
    }

    /// The MTU of `port`.
    fn mtu(&self, port: PortId) -> usize {
        let snapshot = self.pipeline.snapshot();
        snapshot
            .port(port)
            .map_or(usize::MAX, |p| usize::from(p.mtu))
    }

    /// Sends frame `i`, longer than `port`'s MTU, cut to it: in segments,
    /// and packets without DF in fragments. What cannot be cut (DF, not
    /// IPv4) is not sent: counted as `mtu_exceeded`.
    #[cold]
    fn send_cut(&mut self, port: PortId, i: usize) {
        let mtu = self.mtu(port);
        let counters = self.pipeline.counters();
        let Some((frame, _)) = self.batch.get(i) else {
            return;
        };
        let Some(Some(queue)) = self.queues.get_mut(usize::from(port.0)) else {
            counters.count_drop(DropReason::TxError);
            mirror_sent(&self.pipeline, port, frame.in_port, frame.data(), false);
            return;
        };
        if let Some(dirty) = self.dirty.get_mut(usize::from(port.0)) {
            *dirty = true;
        }
        let pipeline = &self.pipeline;
        let (scratch, fragments) = (&mut self.scratch, &mut self.fragment_scratch);
        let result = crate::io::egress_mtu::cut(frame, mtu, scratch, fragments, |f| {
            let sent = queue.send(f);
            match sent {
                Ok(()) => counters.tx(port, f.len()),
                Err(_) => counters.count_drop(DropReason::TxError),
            }
            mirror_sent(pipeline, port, frame.in_port, f.data(), sent.is_ok());
        });
        let cut = match result {
            Ok(cut) => cut,
            Err(_) => {
                counters.count_drop(DropReason::TxOffloadError);
                return;
            }
        };
        cut.count(frame, counters);
        if cut.refused > 0 {
            mirror_refused(pipeline, port, frame, DropReason::MtuExceeded);
        }
    }

    /// Sends what the queues hold; the frames a queue could not send are
    /// counted when its device drops are read.
    fn flush(&mut self) {
        for (i, dirty) in self.dirty.iter_mut().enumerate() {
            if core::mem::take(dirty)
                && let Some(Some(q)) = self.queues.get_mut(i)
            {
                let _ = q.flush();
            }
        }
    }
}

/// Sends an encapsulated super-frame whole (UDP-tunnel GSO) if it can go
/// so ([`crate::overlay::whole_super_frame`]); false when it must be cut in
/// software instead. A frame the device refuses is dropped as `tx_error`.
fn send_whole(
    frame: &Frame,
    queue: &mut dyn PortQueue,
    counters: &WorkerCounters,
    port: PortId,
) -> bool {
    let mut outer = [0u8; crate::overlay::OUTER_LEN];
    let Some(whole) = crate::overlay::whole_super_frame(frame, &mut outer) else {
        return false;
    };
    let mut vnet = [0u8; vnet::VNET_HDR_LEN_TUNNEL];
    vnet::encode_tunnel(&whole.offload, &whole.tunnel, &mut vnet);
    let inner = frame.data().get(outer.len()..).unwrap_or_default();
    match queue.send_tunnel_gso(&vnet, &outer, inner) {
        Ok(()) => {
            counters.tx(port, frame.len());
            counters.event(Event::VxlanGsoSentWhole);
        }
        Err(_) => counters.count_drop(DropReason::TxError),
    }
    true
}

/// Sends an encapsulated super-frame as segments of at most `mtu` bytes,
/// each with its own outer headers (or a plain inner packet as fragments).
fn send_encapsulated(
    frame: &Frame,
    queue: &mut dyn PortQueue,
    scratch: &mut Frame,
    counters: &WorkerCounters,
    (port, mtu): (PortId, usize),
) {
    if frame.offload.gso != GsoKind::None {
        counters.event(Event::VxlanGsoSegmented);
    }
    let result = crate::overlay::segment_encapsulated(frame, scratch, mtu, |segment| {
        match queue.send(segment) {
            Ok(()) => counters.tx(port, segment.len()),
            Err(_) => counters.count_drop(DropReason::TxError),
        }
    });
    if result.is_err() {
        counters.count_drop(DropReason::VxlanEncapFailed);
    }
}

/// Sends a frame whose offloads `queue` does not take: its checksum
/// completed, or its segments cut, in software.
fn send_in_software(
    frame: &Frame,
    queue: &mut dyn PortQueue,
    scratch: &mut Frame,
    pipeline: &Pipeline,
    port: PortId,
) {
    let counters = pipeline.counters();
    counters.event(if frame.offload.gso == GsoKind::None {
        Event::ChecksumCompleted
    } else {
        Event::GsoSegmented
    });
    let result = crate::io::gso::segment(frame.data(), &frame.offload, scratch, |segment| {
        let sent = queue.send(segment);
        match sent {
            Ok(()) => counters.tx(port, segment.len()),
            Err(_) => counters.count_drop(DropReason::TxError),
        }
        mirror_sent(pipeline, port, frame.in_port, segment.data(), sent.is_ok());
        Ok::<(), crate::io::gso::GsoError>(())
    });
    if result.is_err() {
        counters.count_drop(DropReason::TxOffloadError);
    }
}

/// Adds what `queue` (of `port`) lost since the last call to the port's counters
/// (receive) and to the drops (frames it took to send that did not go out).
fn count_device_drops(queue: &mut dyn PortQueue, counters: &WorkerCounters, port: PortId) {
    let drops = queue.take_device_drops();
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    counters.add_drops(DropReason::TxTooBig, clamp(drops.tx_too_big));
    counters.add_drops(DropReason::TxError, clamp(drops.tx_failed));
    if let Some(c) = counters.port(port) {
        c.rx_errors.add(drops.errors);
        c.rx_dropped.add(drops.dropped);
    }
}

/// Mirror hook of a frame the output refused for `reason`: a drop,
/// selected by its output port.
#[cold]
fn mirror_refused(pipeline: &Pipeline, port: PortId, frame: &Frame, reason: DropReason) {
    if pipeline.mirror_active(MirrorStage::Drop) {
        let note = MirrorNote::new(MirrorStage::Drop, frame.in_port)
            .with_out_port(port)
            .with_verdict(Verdict::Drop(reason));
        pipeline.mirror(MirrorStage::Drop, port, frame.data(), note);
    }
}

/// Mirror hook of the transmit path: a frame sent on `port` is an egress
/// copy (flooded copies included, segments as cut); one the output refused is
/// a drop with [`DropReason::TxError`], selected by its output port.
#[inline]
fn mirror_sent(pipeline: &Pipeline, port: PortId, in_port: PortId, data: &[u8], sent: bool) {
    let stage = if sent {
        MirrorStage::Egress
    } else {
        MirrorStage::Drop
    };
    if pipeline.mirror_active(stage) {
        let verdict = if sent {
            Verdict::Forward(port)
        } else {
            Verdict::Drop(DropReason::TxError)
        };
        let note = MirrorNote::new(stage, in_port)
            .with_out_port(port)
            .with_verdict(verdict);
        pipeline.mirror(stage, port, data, note);
    }
}

/// The ports with a queue, in poll order, and the poll set over their fds.
fn poll_set(queues: &[Option<Box<dyn PortQueue>>]) -> (Vec<PortId>, PollSet) {
    let polled: Vec<PortId> = (0..queues.len())
        .filter(|&i| queues[i].is_some())
        .map(|i| PortId(u16::try_from(i).unwrap_or(u16::MAX)))
        .collect();
    let fds: Vec<_> = polled
        .iter()
        .filter_map(|p| queues[usize::from(p.0)].as_ref().map(|q| q.poll_fd()))
        .collect();
    (polled, PollSet::new(&fds))
}

#[cfg(test)]
mod tests;
