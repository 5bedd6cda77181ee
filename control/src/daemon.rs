//! `podswitchd run`: the node service.
//!
//! Start-up: take the single-instance lock, load and validate the
//! configuration, open every port (re-attaching persistent TAPs), start the
//! workers. A port whose device cannot be opened (its pod's namespace went
//! while the daemon was down) is down with its reason, and the rest starts:
//! one stale pod must not take the node's forwarding and API with it. Then the main thread only watches for SIGTERM/SIGINT and writes
//! the stats file once per second. SIGHUP is logged and ignored: there is
//! nothing to reload (changes come through the API), and a hang-up must not
//! end the node's forwarding. Shutdown: set the stop flag, join the
//! workers (each exits within its poll timeout plus one batch), write the
//! stats a last time. Persistent TAPs stay in their pods, so a restarted
//! daemon picks them up and the pods keep their interfaces and addresses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::io::PortStates;
use podswitch_dataplane::pipeline::SharedTables;
use podswitch_dataplane::worker::{Worker, WorkerSetup};

use crate::api::{self, Api, RootOnlyListener};
use crate::control::Control;
use crate::instance_lock::InstanceLock;
use crate::ports;
use crate::stats::Stats;
use crate::store::Store;

/// Options of `podswitchd run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The node configuration file (`None`: the default one, which may be
    /// missing when following a cluster; see [`crate::node_config`]).
    pub config: Option<PathBuf>,
    /// `--uplink IFACE`: the uplink is this interface, with its address and MAC.
    pub uplink: Option<String>,
    /// `--host-proc DIR`: the host's `/proc` mounted here, for pods' `/proc/PID/ns/net`.
    pub host_proc: Option<PathBuf>,
    /// Worker threads.
    pub workers: usize,
    /// Directory for the lock file (one daemon per directory).
    pub run_dir: PathBuf,
    /// Where to write the stats JSON every second (default: `<run_dir>/stats.json`).
    pub stats_file: Option<PathBuf>,
    /// Busy-poll window after traffic, in microseconds (0: always sleep in poll).
    pub busy_poll_us: u64,
    /// `--tunnel-gso`: send VXLAN super-frames whole where the kernel can.
    pub tunnel_gso: crate::tunnel_tx::TunnelGso,
    /// The control API socket.
    pub api_socket: PathBuf,
    /// Where the API state is stored (`state.redb`).
    pub state_dir: PathBuf,
    /// Also serve `/metrics` over TCP here.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The Kubernetes source's command-line options.
    pub kubernetes: crate::kubernetes::KubernetesRun,
    /// `--takeover`: take over from the daemon running with this run directory.
    pub takeover: bool,
}

/// Runs the node service until SIGTERM or SIGINT.
pub fn run(opts: &RunOptions) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    podswitch_dataplane::mem::heap::limit_arenas(cores);
    // First of all, so that a SIGHUP during start-up does not end it either.
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .context("SIGHUP handler")?;
    // Before the configuration: completing it may wait for this node's Node.
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .context("SIGTERM handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .context("SIGINT handler")?;
    // A takeover: the running daemon hands its TAP queues over and
    // releases the lock and the database, still forwarding.
    let incoming = if opts.takeover {
        std::fs::create_dir_all(&opts.run_dir)
            .with_context(|| format!("cannot create {}", opts.run_dir.display()))?;
        let incoming = crate::takeover::request(&opts.run_dir)?;
        match &incoming {
            Some(i) => {
                tracing::info!(from_pid = %i.from_pid, "taking over: the running daemon released the lock and the database")
            }
            None => tracing::info!("no running podswitchd to take over; starting"),
        }
        incoming
    } else {
        None
    };
    let lock = InstanceLock::acquire(&opts.run_dir)?;
    if let Some(dir) = &opts.host_proc {
        ports::set_host_proc(dir.clone());
    }
    let sources = crate::node_config::Sources {
        config: opts.config.as_deref(),
        kubernetes: &opts.kubernetes,
        uplink: opts.uplink.as_deref(),
    };
    let (mut file, config_path) = crate::node_config::load(&sources, &stop)?;
    crate::host::settle_uplink_mtu(&mut file);
    crate::host::settle_masquerade_ports(&mut file)
        .with_context(|| format!("{}: a setting cannot work", config_path.display()))?;
    let kubernetes_section = file.kubernetes.clone();
    let store = Store::open(&opts.state_dir)?;
    // The stored API state is restored before the first packet is forwarded.
    let (mut control, snapshot) =
        Control::restore(file.clone(), store).context("restoring the stored state")?;
    refuse_unusable(&file, &snapshot)
        .and_then(|()| refuse_clashes(&file))
        .with_context(|| format!("{}: a setting cannot work", config_path.display()))?;
    let workers = opts.workers.max(1);
    tracing::info!(node = %snapshot.node_name, workers, ports = snapshot.ports.len(), generation = snapshot.generation, lock = %lock.path().display(), "starting");

    let started = Instant::now();
    let fanout_base = (std::process::id() as u16).wrapping_mul(31);
    // Before the uplink opens: its queues take the transmit TAP's writers.
    crate::tunnel_tx::setup(&snapshot, opts.tunnel_gso);
    // Taking over, the TAP ports come from the old process once it stops.
    let mut opened = match incoming {
        Some(_) => ports::open_all_but_taps(&snapshot, workers, fanout_base),
        None => ports::open_all(&snapshot, workers, fanout_base),
    };
    if let Some(plan) = crate::host::HostPlan::of(&file, &snapshot) {
        plan.apply().context("setting up the node's own traffic")?;
        tracing::info!(routed = ?plan.routed.iter().map(ToString::to_string).collect::<Vec<_>>(), shared_uplink = ?plan.shared_uplink, "host access and uplink steering installed");
    }
    let port_states = control.view().port_states();
    let snapshots = control.view().snapshots();
    // Before the first packet, and taking over before the old process
    // stops: the tables a previous process left, mapped and checked, and
    // the workers built over them (TAP queues come later).
    let kept = prepare_kept_tables(opts, &snapshot);
    let state_header = kept.header.map(Arc::new);
    let shared = Arc::new(kept.tables);
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handed_over = Arc::new(AtomicBool::new(false));
    let left = crate::takeover::LeftQueues::default();
    // Workers' time is the NAT clock, so the API can show conntrack timeouts.
    let epoch = podswitch_dataplane::nat::clock_origin();
    let (mut counters, mut senders, mut built) = (Vec::new(), Vec::new(), Vec::new());
    for (id, queues) in std::mem::take(&mut opened.queues).into_iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = Worker::new(WorkerSetup {
            id,
            queues,
            snapshots: Arc::clone(&snapshots),
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            epoch,
            busy_poll: Duration::from_micros(opts.busy_poll_us),
            commands: Some(rx),
            port_states: Arc::clone(&port_states),
        });
        counters.push(worker.counters());
        senders.push(tx);
        built.push(worker);
    }
    // The old process stops its workers only now: the forwarding gap is
    // from here until this one's workers run.
    let handover = Instant::now();
    if let Some(incoming) = incoming {
        let mut handed = incoming
            .ready()
            .context("the running daemon did not stop")?;
        let mut taps = ports::Opened::none(&snapshot, workers);
        taps.add_taps(&snapshot, workers, &mut handed);
        for (worker, queues) in built.iter_mut().zip(taps.queues) {
            for (port, queue) in queues.into_iter().enumerate() {
                if let (Some(queue), Ok(port)) = (queue, u16::try_from(port)) {
                    worker.add_queue(podswitch_dataplane::packet::PortId(port), queue);
                }
            }
        }
        opened.notes.append(&mut taps.notes);
        opened.failed.append(&mut taps.failed);
    }
    settle_kept_tables(kept.rest, state_header.as_deref(), &shared, &snapshot);
    for (port, error) in &opened.failed {
        port_states.set_down(
            port.id,
            format!("its device could not be opened: {error:#}"),
        );
    }
    let mut handles = Vec::new();
    for mut worker in built {
        let id = worker.id();
        running.fetch_add(1, Ordering::AcqRel);
        let still = Arc::clone(&running);
        let (left_flag, left_queues) = (Arc::clone(&handed_over), Arc::clone(&left));
        let handle = std::thread::Builder::new()
            .name(format!("podswitch-w{id}"))
            .spawn(move || {
                let result = worker.run();
                // Stopped for a takeover: leave the queues for the new process.
                if left_flag.load(Ordering::Acquire) {
                    let fds = worker.handover_fds();
                    left_queues
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, fds));
                }
                drop(worker);
                still.fetch_sub(1, Ordering::AcqRel);
                result
            })
            .context("cannot start worker thread")?;
        handles.push(handle);
    }
    for note in &opened.notes {
        tracing::info!("{note}");
    }
    control.view().log_ports_down();
    control.attach_workers(senders, counters.clone(), fanout_base);
    control.attach_tables(Arc::clone(&shared));
    control.attach_mirrors(Arc::clone(&shared.mirrors));
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        handover_us = handover.elapsed().as_micros() as u64,
        "forwarding"
    );

    let api = Api::new(control);
    let lock = Arc::new(std::sync::Mutex::new(Some(lock)));
    crate::takeover::listen(crate::takeover::OldSide {
        run_dir: opts.run_dir.clone(),
        state_dir: opts.state_dir.clone(),
        lock: Arc::clone(&lock),
        api: Arc::clone(&api),
        stop: Arc::clone(&stop),
        running: Arc::clone(&running),
        header: state_header.clone(),
        left,
        handed_over: Arc::clone(&handed_over),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("podswitch-api")
        .enable_all()
        .build()
        .context("cannot start the API runtime")?;
    let kubernetes = opts
        .kubernetes
        .resolve(kubernetes_section.as_ref(), &api.view().snapshot());
    if let Some(options) = kubernetes {
        tracing::info!(node = %options.node_name, kubeconfig = ?options.kubeconfig, "following the Kubernetes API");
        let status = crate::kubernetes::spawn(runtime.handle(), api.shared(), options);
        let _ = api.source.set(status);
    }
    let served = runtime.block_on(serve(opts, Arc::clone(&api), &stop, &hangup));

    tracing::info!("stopping");
    api.view().set_stopped();
    let stopping = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
            Err(_) => tracing::error!("worker panicked"),
        }
    }
    // A process that took over has the API socket, the stats file and the
    // state file now.
    let handed_over = handed_over.load(Ordering::Acquire);
    if !handed_over {
        // Everything the tables hold is in the state file already; say it is whole.
        if let Some(header) = &state_header {
            header.mark_closed();
        }
        write_stats(
            &stats_path(opts),
            &snapshots.load(),
            &counters,
            Some(&shared),
            &port_states,
        );
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
    if !handed_over {
        let _ = std::fs::remove_file(&opts.api_socket);
        let _ = std::fs::remove_file(opts.run_dir.join(crate::takeover::SOCKET));
    }
    tracing::info!(
        elapsed_ms = stopping.elapsed().as_millis() as u64,
        "stopped; persistent TAPs left in place"
    );
    drop(lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    served
}

/// The shared tables over the state file under the run directory (see
/// [`prepare_kept_tables`]), and what [`settle_kept_tables`] finishes.
struct KeptTables {
    tables: SharedTables,
    header: Option<podswitch_dataplane::nat::state::StateHeader>,
    rest: KeptRest,
}

/// What is left to do once the previous process stopped.
struct KeptRest {
    parts: Option<podswitch_dataplane::nat::state::KeptParts>,
    report: podswitch_dataplane::nat::state::StateReport,
    path: std::path::PathBuf,
}

/// The shared tables, with connection tracking and affinity in the state
/// file under the run directory (mapped and checked if a previous process
/// left a sound one, which may still be running: nothing it writes is
/// trusted yet), the MACs and neighbours empty until they are settled.
fn prepare_kept_tables(opts: &RunOptions, snapshot: &Snapshot) -> KeptTables {
    use podswitch_dataplane::nat::state::{self, StateSpec};
    let spec = StateSpec {
        path: opts.run_dir.join(STATE_FILE),
        conntrack_capacity: snapshot.nat.conntrack_capacity,
        timeouts: snapshot.nat.timeouts,
        affinity_capacity: podswitch_dataplane::nat::affinity::DEFAULT_AFFINITY_CAPACITY,
    };
    let mut kept = state::prepare(&spec);
    let file = spec.path.display();
    let r = &kept.report;
    if r.upgraded {
        tracing::info!(%file, "state file of an older layout version extended to this version");
    }
    if let Some(reason) = &r.discarded {
        tracing::warn!(%file, %reason, "state file discarded; starting with empty connection tracking");
    }
    if let Some(error) = &r.error {
        tracing::warn!(%file, %error, "cannot keep state in a file; connections will not survive a restart");
    }
    KeptTables {
        rest: KeptRest {
            parts: kept.kept.take(),
            report: kept.report.clone(),
            path: spec.path.clone(),
        },
        tables: SharedTables {
            macs: Default::default(),
            neighbours: Default::default(),
            conntrack: kept.conntrack,
            affinity: kept.affinity,
            mirrors: Default::default(),
        },
        header: kept.header,
    }
}

/// Once the previous process stopped (at once when none ran): settles the
/// connection tracking kept in the state file, takes its MACs (of ports
/// `snapshot` has), neighbours and counters, logs and publishes what it found.
fn settle_kept_tables(
    rest: KeptRest,
    header: Option<&podswitch_dataplane::nat::state::StateHeader>,
    shared: &SharedTables,
    snapshot: &Snapshot,
) {
    let mut r = rest.report;
    if let Some(header) = header {
        let settled = header.settle(&shared.conntrack);
        if let Some(error) = &settled.error {
            tracing::warn!(file = %rest.path.display(), %error, "the new state file could not replace the old one; connections will not survive the next restart");
        }
        r.record(settled);
    }
    let (mut macs, mut neighbours, mut carried) = (0, 0, false);
    if let Some(parts) = rest.parts {
        macs = shared
            .macs
            .take_kept(parts.macs, |port| snapshot.port(port).is_some());
        neighbours = shared.neighbours.take_kept(parts.neighbours);
        carried = match crate::stats::kept::attach(parts.counters) {
            Ok(found) => found != crate::stats::kept::Found::Nothing,
            Err(reason) => {
                tracing::warn!(%reason, "counters start from zero");
                false
            }
        };
    }
    let file = rest.path.display();
    if r.persistent {
        tracing::info!(%file, entries = r.attached_entries, macs, neighbours, counters_continued = carried, clean_stop = r.clean, lists_rebuilt = r.rebuilt, prepare_us = r.elapsed.as_micros() as u64, settle_us = r.settle.as_micros() as u64, "state attached");
    }
    crate::stats::set_state(crate::stats::StateStats {
        file: rest.path.clone(),
        persistent: r.persistent,
        attached_entries: r.attached_entries as u64,
        clean_stop: r.clean,
        discarded: u64::from(r.discarded.is_some()),
        discard_reason: r.discarded.clone(),
        attach_us: (r.elapsed + r.settle).as_micros() as u64,
        settle_us: r.settle.as_micros() as u64,
        lists_rebuilt: r.rebuilt,
        attached_macs: macs as u64,
        attached_neighbours: neighbours as u64,
        counters_continued: carried,
    });
}

/// The state file's name in the run directory.
pub const STATE_FILE: &str = "dataplane.state";

/// Refuses settings of the file that cannot work on this node: other
/// nodes and NodePorts are reached through the uplink, so without one
/// (neither in the file nor set through the API) they would be dead
/// configuration. Nodes added through the API wait for an uplink instead.
fn refuse_unusable(file: &NodeConfig, snapshot: &Snapshot) -> Result<()> {
    if snapshot.uplink.is_some() {
        return Ok(());
    }
    if let Some(node) = file.nodes.first() {
        bail!(
            "nodes[0].name = {}: another node is reached by the uplink, and there is no [uplink] (add one, or remove [[nodes]])",
            node.name
        );
    }
    let node_port = file
        .services
        .iter()
        .enumerate()
        .find_map(|(i, s)| Some((i, s.node_port?)));
    if let Some((i, port)) = node_port {
        bail!(
            "services[{i}].node_port = {port}: a NodePort is served on the uplink's address, and there is no [uplink] (add one, or remove node_port)"
        );
    }
    Ok(())
}

/// Refuses what the file gives twice on one node: a pod address or MAC of
/// two ports, a cluster IP that is a pod's address (the API refuses the
/// same with 409).
fn refuse_clashes(file: &NodeConfig) -> Result<()> {
    for (i, p) in file.ports.iter().enumerate() {
        let before = &file.ports[..i];
        for ip in &p.ips {
            if let Some(q) = before.iter().find(|q| q.ips.contains(ip)) {
                bail!(
                    "ports[{i}].ips = {ip}: already the address of port {}",
                    q.name
                );
            }
        }
        if let Some(mac) = p.mac
            && let Some(q) = before.iter().find(|q| q.mac == Some(mac))
        {
            bail!("ports[{i}].mac = {mac}: already the MAC of port {}", q.name);
        }
    }
    for (i, s) in file.services.iter().enumerate() {
        if let Some(p) = file.ports.iter().find(|p| p.ips.contains(&s.cluster_ip)) {
            bail!(
                "services[{i}].cluster_ip = {}: already the address of port {}",
                s.cluster_ip,
                p.name
            );
        }
    }
    Ok(())
}

fn stats_path(opts: &RunOptions) -> PathBuf {
    opts.stats_file
        .clone()
        .unwrap_or_else(|| opts.run_dir.join("stats.json"))
}

/// Serves the API (and metrics) until the stop flag is set; writes the
/// stats file every second and logs a SIGHUP (`hangup`) meanwhile.
async fn serve(
    opts: &RunOptions,
    api: Arc<Api>,
    stop: &Arc<AtomicBool>,
    hangup: &AtomicBool,
) -> Result<()> {
    let listener = RootOnlyListener::bind(&opts.api_socket)
        .with_context(|| format!("cannot listen on {}", opts.api_socket.display()))?;
    tracing::info!(socket = %opts.api_socket.display(), "API listening");
    let stopped = {
        let stop = Arc::clone(stop);
        move || {
            let stop = Arc::clone(&stop);
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    let api_server =
        axum::serve(listener, api::router(Arc::clone(&api))).with_graceful_shutdown(stopped());
    let api_task = tokio::spawn(async move { api_server.await });
    let metrics_task = match opts.metrics_listen {
        Some(addr) => {
            let l = bind_metrics(addr).await?;
            tracing::info!(%addr, "metrics listening");
            let server = axum::serve(l, api::metrics_router(Arc::clone(&api)))
                .with_graceful_shutdown(stopped());
            Some(tokio::spawn(async move { server.await }))
        }
        None => None,
    };
    let stats_file = stats_path(opts);
    while !stop.load(Ordering::Relaxed) {
        let (snapshot, counters, tables, states) = {
            let c = api.view();
            // Ports a worker found gone since the last round, logged once.
            c.log_ports_down();
            (
                c.snapshot(),
                c.worker_counters().to_vec(),
                c.tables(),
                c.port_states(),
            )
        };
        write_stats(
            &stats_file,
            &snapshot,
            &counters,
            tables.as_deref(),
            &states,
        );
        for _ in 0..50 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if hangup.swap(false, Ordering::Relaxed) {
                tracing::info!("SIGHUP ignored: nothing to reload (changes come through the API)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Running captures end (graceful shutdown waits for their streams);
    // off the runtime, as a change in progress holds the control lock.
    let closing = Arc::clone(&api);
    let _ = tokio::task::spawn_blocking(move || closing.control().close_mirrors()).await;
    let _ = api_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    Ok(())
}

/// How long a new process waits for the metrics address to be free: a
/// process it took over holds it until it exits.
const METRICS_BIND_WAIT: Duration = Duration::from_secs(10);

/// Listens on `addr` for metrics, waiting while it is in use.
async fn bind_metrics(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    let started = Instant::now();
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < METRICS_BIND_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bound => return bound.with_context(|| format!("cannot listen on {addr} for metrics")),
        }
    }
}

fn write_stats(
    path: &Path,
    snapshot: &Snapshot,
    counters: &[Arc<podswitch_dataplane::packet::WorkerCounters>],
    tables: Option<&SharedTables>,
    states: &PortStates,
) {
    let mut stats = Stats::collect(snapshot, counters, states);
    stats.conntrack = tables.map(crate::stats::ConntrackStats::read);
    if let Err(e) = stats.write(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write stats");
    }
}
