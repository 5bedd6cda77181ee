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
//! fragments (`io::fragment`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Snapshot;
use crate::io::poll::PollSet;
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

    /// Takes queue changes from the control plane (between batches only).
    fn apply_commands(&mut self) {
        let Some(commands) = &self.commands else {
            return;
        };
        let mut changed = false;
        while let Ok(command) = commands.try_recv() {
            match command {
                WorkerCommand::AddQueue(port, queue) => {
                    let i = usize::from(port.0);
                    if self.queues.len() <= i {
                        self.queues.resize_with(i + 1, || None);
                        self.dirty.resize(i + 1, false);
                    }
                    self.queues[i] = Some(queue);
                }
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
            // A VXLAN-encapsulated super-frame: cut the inner frame, each
            // segment with its own outer headers (no tunnel GSO through AF_PACKET).
            let mtu = self
                .pipeline
                .snapshot()
                .port(port)
                .map_or(usize::MAX, |p| usize::from(p.mtu));
            let result =
                crate::overlay::segment_encapsulated(frame, &mut self.scratch, mtu, |segment| {
                    match queue.send(segment) {
                        Ok(()) => counters.tx(port, segment.len()),
                        Err(_) => counters.count_drop(DropReason::TxError),
                    }
                });
            if result.is_err() {
                counters.count_drop(DropReason::VxlanEncapFailed);
            }
            return;
        }
        if frame.offload.needs_software() && !queue.accepts_offload() {
            counters.event(if frame.offload.gso == GsoKind::None {
                Event::ChecksumCompleted
            } else {
                Event::GsoSegmented
            });
            let pipeline = &self.pipeline;
            let result = crate::io::gso::segment(
                frame.data(),
                &frame.offload,
                &mut self.scratch,
                |segment| {
                    let sent = queue.send(segment);
                    match sent {
                        Ok(()) => counters.tx(port, segment.len()),
                        Err(_) => counters.count_drop(DropReason::TxError),
                    }
                    mirror_sent(pipeline, port, frame.in_port, segment.data(), sent.is_ok());
                    Ok::<(), crate::io::gso::GsoError>(())
                },
            );
            if result.is_err() {
                counters.count_drop(DropReason::TxOffloadError);
            }
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
mod tests {
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::config::NodeConfig;
    use crate::io::DeviceDrops;

    /// A queue that always polls ready and whose every read fails, with
    /// device drops to hand out once.
    struct FailingQueue {
        _writer: UnixStream,
        reader: UnixStream,
        error: i32,
        drops: Option<DeviceDrops>,
    }

    impl FailingQueue {
        fn new(error: i32, drops: DeviceDrops) -> FailingQueue {
            let (mut writer, reader) = UnixStream::pair().unwrap();
            std::io::Write::write_all(&mut writer, b"x").unwrap();
            FailingQueue {
                _writer: writer,
                reader,
                error,
                drops: Some(drops),
            }
        }
    }

    impl PortQueue for FailingQueue {
        fn poll_fd(&self) -> RawFd {
            self.reader.as_raw_fd()
        }
        fn recv_batch(&mut self, _: &mut Batch, _: PortId, _: u64) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(self.error))
        }
        fn send(&mut self, _: &Frame) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn accepts_offload(&self) -> bool {
            false
        }
        fn device_gone(&self, error: &std::io::Error) -> Option<&'static str> {
            (error.raw_os_error() == Some(libc::EBADFD)).then_some("gone")
        }
        fn take_device_drops(&mut self) -> DeviceDrops {
            self.drops.take().unwrap_or_default()
        }
    }

    /// A queue that gives its frames once and keeps what is sent to it.
    struct ScriptedQueue {
        ready: FailingQueue,
        frames: Vec<(Vec<u8>, crate::packet::Offload)>,
        sent: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    }

    impl PortQueue for ScriptedQueue {
        fn poll_fd(&self) -> RawFd {
            self.ready.poll_fd()
        }
        fn recv_batch(
            &mut self,
            batch: &mut Batch,
            port: PortId,
            now: u64,
        ) -> std::io::Result<usize> {
            let n = self.frames.len();
            for (bytes, offload) in self.frames.drain(..) {
                let slot = batch.rx_slot().unwrap();
                assert!(slot.fill(&bytes));
                (slot.in_port, slot.timestamp_ns, slot.offload) = (port, now, offload);
                batch.commit_rx();
            }
            Ok(n)
        }
        fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
            self.sent.lock().unwrap().push(frame.data().to_vec());
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn accepts_offload(&self) -> bool {
            true
        }
        fn device_gone(&self, _: &std::io::Error) -> Option<&'static str> {
            None
        }
        fn take_device_drops(&mut self) -> DeviceDrops {
            DeviceDrops::default()
        }
    }

    /// Runs a worker whose port a receives `frames` (flooded: their
    /// destination MACs are unknown); returns its counters and what port b
    /// (MTU 1280) sent.
    fn flooded_from_a(
        frames: Vec<(Vec<u8>, crate::packet::Offload)>,
    ) -> (Arc<WorkerCounters>, Vec<Vec<u8>>) {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = |frames, sent| ScriptedQueue {
            ready: FailingQueue::new(0, DeviceDrops::default()),
            frames,
            sent,
        };
        let a = queue(frames, Arc::default());
        let b = queue(vec![], Arc::clone(&sent));
        let (counters, _) = run(vec![Some(Box::new(a)), Some(Box::new(b))]);
        let sent = sent.lock().unwrap().clone();
        (counters, sent)
    }

    /// Runs a worker over `queues` (ports 0 and 1) for a moment.
    fn run(queues: Vec<Option<Box<dyn PortQueue>>>) -> (Arc<WorkerCounters>, Arc<PortStates>) {
        let config = NodeConfig::from_toml_str(
            "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
             [[ports]]\nname = \"a\"\nkind = \"tap\"\n\
             [[ports]]\nname = \"b\"\nkind = \"tap\"\nmtu = 1280\n",
        )
        .unwrap();
        let snapshot = Arc::new(Snapshot::build(&config, 1).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let port_states = Arc::new(PortStates::default());
        let mut worker = Worker::new(WorkerSetup {
            id: 0,
            queues,
            snapshots: Arc::new(ArcSwap::from(snapshot)),
            shared: Arc::new(SharedTables::new(64, Default::default())),
            stop: Arc::clone(&stop),
            epoch: Instant::now(),
            busy_poll: Duration::ZERO,
            commands: None,
            port_states: Arc::clone(&port_states),
        });
        let counters = worker.counters();
        let thread = std::thread::spawn(move || worker.run());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
        (counters, port_states)
    }

    #[test]
    fn receive_errors_and_device_drops_are_counted_per_port() {
        let drops = DeviceDrops {
            errors: 2,
            dropped: 5,
            tx_too_big: 3,
            tx_failed: 4,
        };
        let (counters, states) = run(vec![
            Some(Box::new(FailingQueue::new(libc::EIO, drops))),
            Some(Box::new(FailingQueue::new(libc::EBADFD, drops))),
        ]);
        // Frames the queues took to send and the kernel refused are drops.
        assert_eq!(counters.drops(DropReason::TxTooBig), 2 * 3);
        assert_eq!(counters.drops(DropReason::TxError), 2 * 4);
        let a = counters.port(PortId(0)).unwrap();
        assert!(a.rx_errors.get() > 2, "each failed read counts");
        assert_eq!(a.rx_dropped.get(), 5);
        assert_eq!(states.down_reason(PortId(0)), None, "EIO may pass");
        // A queue whose device is gone is read once, then no more.
        let b = counters.port(PortId(1)).unwrap();
        assert_eq!((b.rx_errors.get(), b.rx_dropped.get()), (1 + 2, 5));
        let reason = states.down_reason(PortId(1)).unwrap();
        assert!(reason.contains("gone"), "{reason}");
    }

    #[test]
    fn a_packet_longer_than_the_output_mtu_leaves_in_fragments() {
        // A 3,000-byte UDP datagram without DF (as an AF_PACKET fanout that
        // reassembles hands it over), flooded from port a to port b (MTU
        // 1280), with a partial checksum the sender left to the device.
        let mut frame = Vec::new();
        let payload: Vec<u8> = (0..2972u32).map(|i| (i % 251) as u8).collect();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3])
            .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
            .udp(40000, 7000)
            .write(&mut frame, &payload)
            .unwrap();
        frame[20] &= !0x40;
        let mut ip = crate::wire::Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
        ip.fill_checksum();
        let original = frame.clone();
        let pseudo = crate::wire::checksum::pseudo_header_v4(
            [10, 244, 1, 2].into(),
            [10, 244, 1, 3].into(),
            17,
            2980,
        );
        frame[40..42].copy_from_slice(&crate::wire::checksum::fold(pseudo).to_be_bytes());
        let partial = crate::packet::Offload {
            csum: Some((34, 6)),
            ..Default::default()
        };
        let (counters, fragments) = flooded_from_a(vec![(frame, partial)]);
        let sizes: Vec<usize> = fragments.iter().map(Vec::len).collect();
        assert_eq!(sizes, [14 + 1276, 14 + 1276, 14 + 20 + 468]);
        assert_eq!(counters.events(Event::Ipv4Fragmented), 1);
        // The partial checksum was completed before the cut.
        assert_eq!(fragments[0][40..42], original[40..42]);
        let mut pool: etherparse::defrag::IpDefragPool = etherparse::defrag::IpDefragPool::new();
        let mut whole = None;
        for f in &fragments {
            let sliced = etherparse::SlicedPacket::from_ethernet(f).unwrap();
            whole = whole.or(pool.process_sliced_packet(&sliced, (), ()).unwrap());
        }
        assert_eq!(whole.unwrap().payload, original[34..]);
    }

    #[test]
    fn a_frame_that_cannot_be_cut_to_the_mtu_is_never_sent() {
        // Flooded from port a to port b (MTU 1280): a 3,000-byte UDP
        // datagram with DF, an IPv6 frame as long, and a USO super-frame
        // without DF whose 2,000-byte datagrams must go in fragments.
        let payload: Vec<u8> = (0..2972u32).map(|i| (i % 251) as u8).collect();
        let (src, dst) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
        let mut df = Vec::new();
        etherparse::PacketBuilder::ethernet2(src, dst)
            .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
            .udp(40000, 7000)
            .write(&mut df, &payload)
            .unwrap();
        let mut v6 = Vec::new();
        etherparse::PacketBuilder::ethernet2(src, dst)
            .ipv6(
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
                64,
            )
            .udp(40000, 7000)
            .write(&mut v6, &payload)
            .unwrap();
        let mut uso = Vec::new();
        etherparse::PacketBuilder::ethernet2(src, dst)
            .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
            .udp(40000, 7000)
            .write(&mut uso, &[7u8; 4000])
            .unwrap();
        uso[20] &= !0x40;
        let mut ip = crate::wire::Ipv4Packet::new_checked(&mut uso[14..]).unwrap();
        ip.fill_checksum();
        let uso_offload = crate::packet::Offload {
            gso: GsoKind::UdpL4,
            gso_size: 2000,
            hdr_len: 42,
            ..Default::default()
        };
        let plain = crate::packet::Offload::default();
        let frames = vec![(df, plain), (v6, plain), (uso, uso_offload)];
        let (counters, sent) = flooded_from_a(frames);
        let sizes: Vec<usize> = sent.iter().map(Vec::len).collect();
        // Each 2,028-byte datagram in two fragments; nothing else.
        assert_eq!(sizes, [14 + 1276, 14 + 20 + 752, 14 + 1276, 14 + 20 + 752]);
        assert_eq!(counters.drops(DropReason::MtuExceeded), 2);
        assert_eq!(counters.events(Event::Ipv4Fragmented), 2);
        assert_eq!(counters.events(Event::GsoSegmented), 1);
    }
}
