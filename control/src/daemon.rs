//! `podswitchd run`: the node service.
//!
//! Start-up: take the single-instance lock, load and validate the
//! configuration, open every port (re-attaching persistent TAPs), start the
//! workers. Then the main thread only watches for SIGTERM/SIGINT and writes
//! the stats file once per second. Shutdown: set the stop flag, join the
//! workers (each exits within its poll timeout plus one batch), write the
//! stats a last time. Persistent TAPs stay in their pods, so a restarted
//! daemon picks them up and the pods keep their interfaces and addresses.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::pipeline::SharedTables;
use podswitch_dataplane::worker::{Worker, WorkerSetup};

use crate::ports;
use crate::stats::Stats;

/// Options of `podswitchd run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The node configuration file.
    pub config: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Directory for the lock file (one daemon per directory).
    pub run_dir: PathBuf,
    /// Where to write the stats JSON every second (default: `<run_dir>/stats.json`).
    pub stats_file: Option<PathBuf>,
    /// Busy-poll window after traffic, in microseconds (0: always sleep in poll).
    pub busy_poll_us: u64,
}

/// Holds the single-instance lock for as long as it lives.
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes `<run_dir>/podswitchd.lock`, or explains who holds it.
    pub fn acquire(run_dir: &Path) -> Result<InstanceLock> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let path = run_dir.join("podswitchd.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "another podswitchd is already running on this node (lock {} held by pid {}); stop it first",
                    path.display(),
                    holder.trim()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes())?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs the node service until SIGTERM or SIGINT.
pub fn run(opts: &RunOptions) -> Result<()> {
    let lock = InstanceLock::acquire(&opts.run_dir)?;
    let config = NodeConfig::load(&opts.config)?;
    let snapshot = Arc::new(Snapshot::build(&config, 1)?);
    let workers = opts.workers.max(1);
    tracing::info!(node = %snapshot.node_name, workers, ports = snapshot.ports.len(), lock = %lock.path().display(), "starting");

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .context("SIGTERM handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .context("SIGINT handler")?;

    let started = Instant::now();
    let fanout_base = (std::process::id() as u16).wrapping_mul(31);
    let (queues, notes) = ports::open_all(&snapshot, workers, fanout_base)?;
    for note in &notes {
        tracing::info!("{note}");
    }
    let snapshots = Arc::new(ArcSwap::from(Arc::clone(&snapshot)));
    let shared = Arc::new(SharedTables::default());
    let epoch = Instant::now();
    let mut counters = Vec::new();
    let mut handles = Vec::new();
    for (id, queues) in queues.into_iter().enumerate() {
        let mut worker = Worker::new(WorkerSetup {
            id,
            queues,
            snapshots: Arc::clone(&snapshots),
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            epoch,
            busy_poll: Duration::from_micros(opts.busy_poll_us),
            commands: None,
        });
        counters.push(worker.counters());
        let handle = std::thread::Builder::new()
            .name(format!("podswitch-w{id}"))
            .spawn(move || worker.run())
            .context("cannot start worker thread")?;
        handles.push(handle);
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "forwarding"
    );

    let stats_file = opts
        .stats_file
        .clone()
        .unwrap_or_else(|| opts.run_dir.join("stats.json"));
    let mut next_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_stats {
            write_stats(&stats_file, &snapshots.load(), &counters);
            next_stats += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!("stopping");
    let stopping = Instant::now();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
            Err(_) => tracing::error!("worker panicked"),
        }
    }
    write_stats(&stats_file, &snapshots.load(), &counters);
    tracing::info!(
        elapsed_ms = stopping.elapsed().as_millis() as u64,
        "stopped; persistent TAPs left in place"
    );
    drop(lock);
    Ok(())
}

fn write_stats(
    path: &Path,
    snapshot: &Snapshot,
    counters: &[Arc<podswitch_dataplane::pipeline::WorkerCounters>],
) {
    if let Err(e) = Stats::collect(snapshot, counters).write(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write stats");
    }
}
