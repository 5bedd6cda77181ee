//! Running code inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the netns of the calling *thread* only, and
//! a tokio worker or a pipeline worker must never change netns under its
//! own feet. [`run_in_netns`] therefore spawns a short-lived thread, moves
//! that thread into the target netns, runs the closure and lets the thread
//! exit. Sockets and TAP fds opened inside the closure stay bound to the
//! target netns after the thread is gone, so they can be returned.
//!
//! ```no_run
//! # use std::path::Path;
//! use podswitch_dataplane::io::netns::run_in_netns;
//! let names = run_in_netns(Path::new("/run/netns/pod-a"), || {
//!     std::fs::read_dir("/proc/thread-self/net").map(|d| d.count())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Opens a netns file (`/run/netns/NAME`, `/proc/PID/ns/net`) for
/// [`run_in_netns`] or for moving a link there (`IFLA_NET_NS_FD`).
pub fn open_netns(netns_path: &Path) -> io::Result<OwnedFd> {
    let file = File::open(netns_path)?;
    Ok(OwnedFd::from(file))
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread.
fn setns_net(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns only reads the fd number, which `fd` keeps open for the call.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a dedicated thread that has joined the network namespace at
/// `netns_path`, and returns its result. The calling thread never changes
/// netns. A panic in `f` is resumed in the caller.
pub fn run_in_netns<F, T>(netns_path: &Path, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fd = open_netns(netns_path)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("podswitch-netns".into())
            .spawn_scoped(scope, move || {
                setns_net(&fd)?;
                drop(fd);
                Ok(f())
            })?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Test helpers: throw-away named network namespaces.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// True when the tests that build namespaces can run; prints why not.
    pub(crate) fn can_build_namespaces(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            eprintln!("skipping {test}: needs root (euid {euid})");
            return false;
        }
        let ip = Command::new("ip").arg("-V").output();
        if !ip.is_ok_and(|o| o.status.success()) {
            eprintln!("skipping {test}: iproute2 `ip` is not installed");
            return false;
        }
        true
    }

    /// A named netns (`ip netns add pstap-<pid>-<n>-<tag>`), deleted on drop.
    pub(crate) struct TestNetns {
        pub(crate) name: String,
        pub(crate) path: PathBuf,
    }

    impl TestNetns {
        /// Creates a fresh namespace; the name is unique to this process.
        pub(crate) fn new(tag: &str) -> TestNetns {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("pstap-{}-{n}-{tag}", std::process::id());
            let status = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .expect("running ip netns add");
            assert!(status.success(), "ip netns add {name} failed");
            let path = PathBuf::from(format!("/run/netns/{name}"));
            TestNetns { name, path }
        }

        /// `ip -n NAME ARGS...` and its stdout; panics on failure.
        pub(crate) fn ip(&self, args: &[&str]) -> String {
            let out = Command::new("ip")
                .args(["-n", &self.name])
                .args(args)
                .output()
                .expect("running ip");
            assert!(
                out.status.success(),
                "ip -n {} {args:?}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// `ip -j -n NAME ARGS...` parsed as JSON.
        pub(crate) fn ip_json(&self, args: &[&str]) -> serde_json::Value {
            let mut all = vec!["-j"];
            all.extend_from_slice(args);
            serde_json::from_str(&self.ip(&all)).expect("ip -j prints JSON")
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::testing::{TestNetns, can_build_namespaces};
    use super::*;

    fn thread_netns_inode() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/net")
            .expect("stat /proc/thread-self/ns/net")
            .ino()
    }

    #[test]
    fn closure_runs_in_the_target_netns_and_caller_stays() {
        if !can_build_namespaces("closure_runs_in_the_target_netns_and_caller_stays") {
            return;
        }
        let ns = TestNetns::new("netns");
        let before = thread_netns_inode();
        let target = std::fs::metadata(&ns.path).unwrap().ino();
        let inside = run_in_netns(&ns.path, thread_netns_inode).unwrap();
        assert_eq!(inside, target);
        assert_ne!(inside, before);
        assert_eq!(thread_netns_inode(), before);
    }

    #[test]
    fn missing_netns_is_an_error() {
        let err = run_in_netns(Path::new("/nonexistent/pstap-netns"), || ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_that_is_no_netns_is_refused() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping a_file_that_is_no_netns_is_refused: needs root");
            return;
        }
        let err = run_in_netns(Path::new("/proc/self/stat"), || ()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
