//! The control plane's processes: started in a network namespace or here,
//! with logs in files, probed until healthy, stopped by pid.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use podswitch_dataplane::io::netns::run_in_netns;

use super::rest::curl_raw;
use super::{LOG_TAIL_LINES, PROBE_TIMEOUT, STOP_GRACE};

/// One child process with its log file.
pub(super) struct Process {
    pub(super) name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub(super) fn not_started(name: &'static str, log: PathBuf) -> Process {
        Process {
            name,
            child: None,
            log,
        }
    }

    /// Starts `cmd` with stdout and stderr appended to the log.
    pub(super) fn spawn(&mut self, mut cmd: Command) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let err = log.try_clone().expect("duplicate log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    pub(super) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Panics with the log's tail if the process has exited.
    pub(super) fn assert_running(&mut self) {
        let status: Option<ExitStatus> = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = status {
            panic!("{} exited with {status}; log:\n{}", self.name, self.tail());
        }
    }

    pub(super) fn tail(&self) -> String {
        tail(&self.log, LOG_TAIL_LINES)
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill() on a pid we spawned and have not reaped yet; no memory is involved.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGKILL and wait.
    pub(super) fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Polls `url` (no token) until it answers 200; panics with the log of
/// `process` if it exits or `limit` passes.
pub(super) fn wait_healthy(netns: Option<&str>, process: &mut Process, url: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        process.assert_running();
        let last = match curl_raw(netns, None, "GET", url, None, None, PROBE_TIMEOUT) {
            Ok((200, _)) => return,
            Ok((status, body)) => format!("HTTP {status}: {}", body.trim()),
            Err(e) => e,
        };
        if start.elapsed() > limit {
            panic!(
                "{} not healthy after {limit:?} (last answer: {last}); log:\n{}",
                process.name,
                process.tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to every process, SIGKILL to those still running after
/// [`STOP_GRACE`]; all are reaped.
pub(super) fn stop_all(mut processes: Vec<&mut Process>) {
    for p in &processes {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && processes.iter_mut().any(|p| p.running()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in processes {
        p.kill();
    }
}

/// `program` to run in network namespace `netns` (`ip netns exec`, which
/// execs it: the child's pid is the program's) or, for `None`, here.
pub(super) fn command(netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    match netns {
        Some(name) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", name]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Runs `f` in network namespace `netns`, or here for `None`.
pub(super) fn in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> T {
    match netns {
        Some(name) => {
            let path = Path::new("/var/run/netns").join(name);
            run_in_netns(&path, f).unwrap_or_else(|e| panic!("enter netns {name}: {e}"))
        }
        None => f(),
    }
}

/// A free TCP port on each of `addresses` (in `netns`), all different.
pub(super) fn free_ports(netns: Option<&str>, addresses: &[Ipv4Addr]) -> Vec<u16> {
    in_netns(netns, || {
        // Hold every listener until all ports are chosen so that none repeats.
        let listeners: Vec<TcpListener> = addresses
            .iter()
            .map(|a| TcpListener::bind((*a, 0)).unwrap_or_else(|e| panic!("bind {a}:0: {e}")))
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().expect("local address").port())
            .collect()
    })
}

/// Waits up to 10 s for nothing to listen on `address:port` (in `netns`), so
/// that a stale server cannot answer for the one about to start.
pub(super) fn wait_port_free(netns: Option<&str>, address: Ipv4Addr, port: u16, what: &str) {
    in_netns(netns, || {
        let start = Instant::now();
        while let Err(e) = TcpListener::bind((address, port)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what} port {address}:{port} is still taken: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// The last `lines` lines of a file (at most its last 64 KiB).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("({} missing)", path.display());
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
