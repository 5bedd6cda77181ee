//! `podswitchd run --takeover`: a new process (an upgrade) takes the node
//! over from the running one without a forwarding gap worth the name, as
//! Envoy's hot restart does.
//!
//! Every daemon listens on `<run dir>/takeover.sock` (root only). The new
//! process connects and the two talk in fixed-size frames:
//!
//! 1. new → `TAKEOVER <pid>`. The old one closes its state database and
//!    releases the instance lock, **still forwarding**, then → `RELEASED
//!    <pid>`. The new one takes the lock, opens the database, restores its
//!    configuration and opens its AF_PACKET ports (sockets of its own).
//! 2. new → `READY`; the old one stops its workers, sends one `PORT <name>`
//!    frame per TAP port with its queue descriptors (`SCM_RIGHTS`: the same
//!    open queues, so frames queued in them stay queued), marks the state
//!    file whole, keeps its final counter totals in it and → `STOPPED`;
//!    the new one wraps the queues, attaches the state file and starts its
//!    workers. The forwarding gap is this step. The old process then
//!    exits; it leaves the API socket and the stats file to the new one.
//!
//! If the new process goes away before `READY`, the old one takes the lock
//! and the database back and goes on as before.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podswitch_dataplane::nat::state::StateHeader;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::api::Api;
use crate::instance_lock::InstanceLock;
use crate::ports::HandedTaps;
use podswitch_dataplane::packet::PortId;

/// The socket's name in the run directory.
pub const SOCKET: &str = "takeover.sock";
/// Bytes of every frame (text, NUL padded).
const FRAME: usize = 256;
/// Most descriptors in one frame (queues of one TAP port).
const MAX_FDS: usize = 64;
/// How long the old process waits for its workers to stop.
const STOP_LIMIT: Duration = Duration::from_secs(5);

fn send_frame(sock: &UnixStream, text: &str, fds: &[BorrowedFd<'_>]) -> Result<()> {
    let mut frame = [0u8; FRAME];
    let n = text.len().min(FRAME);
    frame[..n].copy_from_slice(&text.as_bytes()[..n]);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        bail!("too many descriptors for one frame ({})", fds.len());
    }
    let sent = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(&frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .context("sending a takeover frame")?;
    if sent != FRAME {
        bail!("a takeover frame went out short ({sent} bytes)");
    }
    Ok(())
}

fn recv_frame(sock: &UnixStream) -> Result<(String, Vec<OwnedFd>)> {
    let mut frame = [0u8; FRAME];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut frame)],
        &mut control,
        RecvFlags::WAITALL | RecvFlags::CMSG_CLOEXEC,
    )
    .context("receiving a takeover frame")?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes != FRAME {
        bail!("the other process closed the takeover connection");
    }
    let end = frame.iter().position(|&b| b == 0).unwrap_or(FRAME);
    Ok((String::from_utf8_lossy(&frame[..end]).into_owned(), fds))
}

fn expect(sock: &UnixStream, want: &str) -> Result<()> {
    let (got, _) = recv_frame(sock)?;
    if got != want {
        bail!("expected {want} from the other process, got {got:?}");
    }
    Ok(())
}

/// The new process's side, between `RELEASED` and `STOPPED`.
#[derive(Debug)]
pub struct Incoming {
    conn: UnixStream,
    /// The running process's pid, for the log.
    pub from_pid: String,
}

/// Asks the daemon of `run_dir` to hand over; returns once it has
/// released the lock and database (it still forwards).
/// `Ok(None)`: no daemon is listening there.
pub fn request(run_dir: &Path) -> Result<Option<Incoming>> {
    let path = run_dir.join(SOCKET);
    let conn = match UnixStream::connect(&path) {
        Ok(conn) => conn,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", path.display())),
    };
    send_frame(&conn, &format!("TAKEOVER {}", std::process::id()), &[])?;
    let (released, _) = recv_frame(&conn)?;
    let Some(("RELEASED", from_pid)) = released.split_once(' ') else {
        bail!("unexpected takeover frame {released:?}");
    };
    Ok(Some(Incoming {
        conn,
        from_pid: from_pid.to_string(),
    }))
}

impl Incoming {
    /// Tells the old process this one is ready, waits until its workers
    /// have stopped (and the state file is whole) and returns the TAP
    /// queues it handed over.
    pub fn ready(self) -> Result<HandedTaps> {
        send_frame(&self.conn, "READY", &[])?;
        let mut taps = HandedTaps::new();
        loop {
            let (frame, fds) = recv_frame(&self.conn)?;
            match frame.split_once(' ') {
                Some(("PORT", name)) => {
                    taps.insert(name.to_string(), fds);
                }
                None if frame == "STOPPED" => return Ok(taps),
                _ => bail!("unexpected takeover frame {frame:?}"),
            }
        }
    }
}

/// Queue descriptors the old process's workers leave when they stop, per
/// worker: `(worker, [(port, descriptor)])`.
pub type LeftQueues = Arc<Mutex<Vec<(usize, Vec<(PortId, OwnedFd)>)>>>;

/// What the running process gives up when it is taken over.
pub struct OldSide {
    /// Its run directory (the socket) and state directory (the database).
    pub run_dir: PathBuf,
    /// The state database's directory.
    pub state_dir: PathBuf,
    /// Its instance lock.
    pub lock: Arc<Mutex<Option<InstanceLock>>>,
    /// Its API (the control state holds the database).
    pub api: Arc<Api>,
    /// Stops its workers and its main loop.
    pub stop: Arc<AtomicBool>,
    /// Workers still running.
    pub running: Arc<AtomicUsize>,
    /// The state file's header.
    pub header: Option<Arc<StateHeader>>,
    /// Where its workers leave their queues' descriptors when they stop.
    pub left: LeftQueues,
    /// Set once handed over: the old process leaves the API socket and the stats file alone.
    pub handed_over: Arc<AtomicBool>,
}

/// Listens for a takeover of this process, in a thread of its own.
pub fn listen(old: OldSide) -> Result<()> {
    let path = old.run_dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    std::thread::Builder::new()
        .name("podswitch-takeover".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match old.hand_over(&conn) {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "takeover failed; going on")
                    }
                }
            }
        })
        .context("cannot start the takeover thread")?;
    Ok(())
}

impl OldSide {
    /// One takeover attempt; `true` once handed over.
    fn hand_over(&self, conn: &UnixStream) -> Result<bool> {
        let (hello, _) = recv_frame(conn)?;
        let Some(("TAKEOVER", pid)) = hello.split_once(' ') else {
            bail!("unexpected takeover request {hello:?}");
        };
        tracing::info!(
            new_pid = pid,
            "taking over: releasing the lock and the database"
        );
        self.release();
        send_frame(conn, &format!("RELEASED {}", std::process::id()), &[])?;
        if let Err(e) = expect(conn, "READY") {
            self.take_back();
            return Err(e.context("the new process did not get ready"));
        }
        let stopping = Instant::now();
        self.handed_over.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        while self.running.load(Ordering::Acquire) > 0 && stopping.elapsed() < STOP_LIMIT {
            std::thread::sleep(Duration::from_micros(20));
        }
        // The table's memory is the new process's from here: no flush
        // through this process's API may write it.
        if let Some(tables) = self.api.view().tables() {
            tables.conntrack.hand_over();
        }
        if let Some(header) = &self.header {
            header.mark_closed();
        }
        // The workers' final counts, kept for the new process; then no more.
        let _ = self.api.view().stats();
        crate::stats::kept::seal();
        for (name, fds) in self.taps_by_name() {
            let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            send_frame(conn, &format!("PORT {name}"), &fds)?;
        }
        send_frame(conn, "STOPPED", &[])?;
        tracing::info!(
            stop_us = stopping.elapsed().as_micros() as u64,
            "taken over: workers stopped, the new process forwards"
        );
        Ok(true)
    }

    /// The queues the stopped workers left, by TAP port name, in worker order.
    fn taps_by_name(&self) -> Vec<(String, Vec<OwnedFd>)> {
        let snapshot = self.api.view().snapshot();
        let mut left = std::mem::take(&mut *self.left.lock().unwrap_or_else(|e| e.into_inner()));
        left.sort_by_key(|(worker, _)| *worker);
        let mut by_port: Vec<(String, Vec<OwnedFd>)> = Vec::new();
        for (_, fds) in left {
            for (port, fd) in fds {
                let Some(spec) = snapshot.ports.iter().find(|p| p.id == port) else {
                    continue;
                };
                match by_port.iter_mut().find(|(name, _)| *name == spec.name) {
                    Some((_, fds)) => fds.push(fd),
                    None => by_port.push((spec.name.clone(), vec![fd])),
                }
            }
        }
        by_port
    }

    /// Closes the database and releases the lock, for the new process.
    fn release(&self) {
        self.api.control().close_store();
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Takes the lock and the database back after a failed takeover.
    fn take_back(&self) {
        match InstanceLock::acquire(&self.run_dir) {
            Ok(lock) => *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot take the instance lock back")
            }
        }
        let reopened = self.api.control().reopen_store(&self.state_dir);
        if let Err(e) = reopened {
            tracing::error!(error = %format!("{e:#}"), "cannot open the state database again; API changes fail");
        }
    }
}
