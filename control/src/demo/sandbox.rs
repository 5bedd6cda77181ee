//! The demo's sandbox: the namespaces, links, processes and files it
//! creates, each written to the crash [`Record`] before it exists, and all
//! removed by [`Sandbox::teardown`] (also on drop, so an error or a panic
//! cleans up too).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use podswitch_dataplane::io::netns::run_in_netns;

use super::record::{ProcessId, Record, delete_netns};

/// The underlay subnet joining the nodes and the external namespace.
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// The external namespace's address on the underlay.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 100);

/// Something that must be undone before the namespaces go (CNI DEL, a server).
pub type Undo = Box<dyn FnOnce() + Send>;

/// The sandbox of one demo run.
pub struct Sandbox {
    /// `psdemo<pid>`: the prefix of every namespace.
    pub prefix: String,
    /// The temporary directory (configs, sockets, state, IPAM store, logs).
    pub dir: PathBuf,
    record: Record,
    daemons: Vec<(Child, Option<ProcessId>)>,
    undo: Vec<Undo>,
    interrupted: Arc<AtomicBool>,
    torn_down: bool,
}

impl Sandbox {
    /// Creates the record and the temporary directory.
    pub fn create(interrupted: Arc<AtomicBool>) -> Result<Sandbox> {
        let prefix = format!("psdemo{}", std::process::id());
        let mut record = Record::for_this_process()?;
        let dir = std::env::temp_dir().join(&prefix);
        record.dirs.push(dir.clone());
        record
            .save()
            .with_context(|| format!("cannot write {}", record.path().display()))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Sandbox {
            prefix,
            dir,
            record,
            daemons: Vec::new(),
            undo: Vec::new(),
            interrupted,
            torn_down: false,
        })
    }

    /// Fails if SIGINT/SIGTERM arrived (checked between steps).
    pub fn check_interrupted(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// True once SIGINT/SIGTERM arrived.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// The full name of the namespace `tag` (`psdemo<pid>-<tag>`).
    pub fn netns_name(&self, tag: &str) -> String {
        format!("{}-{tag}", self.prefix)
    }

    /// The namespace file of `tag`.
    pub fn netns_path(&self, tag: &str) -> PathBuf {
        Path::new("/var/run/netns").join(self.netns_name(tag))
    }

    /// Creates the namespace `tag` with loopback up and IPv6 off (so the
    /// counters show only the demo's traffic).
    pub fn add_netns(&mut self, tag: &str) -> Result<()> {
        let name = self.netns_name(tag);
        self.record.namespaces.push(name.clone());
        self.record
            .save()
            .context("cannot update the demo record")?;
        ip(&["netns", "add", &name])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        run_in_netns(&self.netns_path(tag), || {
            for conf in ["all", "default"] {
                let knob = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                // Without IPv6 in the kernel there is nothing to turn off.
                let _ = std::fs::write(knob, "1");
            }
        })
        .with_context(|| format!("cannot enter netns {name}"))?;
        Ok(())
    }

    /// A veth pair `a` in namespace `ns_a`, `b` in `ns_b`, both up. Both
    /// ends are created directly in their namespaces, never in the caller's.
    pub fn veth(&self, a: &str, ns_a: &str, b: &str, ns_b: &str) -> Result<()> {
        let (ns_a, ns_b) = (self.netns_name(ns_a), self.netns_name(ns_b));
        ip(&[
            "link", "add", a, "netns", &ns_a, "type", "veth", "peer", "name", b, "netns", &ns_b,
        ])?;
        ip(&["-n", &ns_a, "link", "set", a, "up"])?;
        ip(&["-n", &ns_b, "link", "set", b, "up"])
    }

    /// Runs `ip -n <ns tag> ARGS`.
    pub fn ip_in(&self, tag: &str, args: &[&str]) -> Result<()> {
        let name = self.netns_name(tag);
        let mut all = vec!["-n", name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Records a started daemon (by pid, start time and `argv0`, once
    /// `ip netns exec` has executed it) and keeps its handle.
    pub fn adopt_daemon(&mut self, child: Child, argv0: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let id = loop {
            match ProcessId::of(child.id()) {
                Some(id) if id.argv0 == argv0 => break Some(id),
                _ if std::time::Instant::now() > deadline => break None,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if let Some(id) = &id {
            self.record.processes.push(id.clone());
        }
        self.daemons.push((child, id));
        self.record.save().context("cannot update the demo record")
    }

    /// Registers `undo` to run at teardown, before the daemons stop.
    pub fn on_teardown(&mut self, undo: Undo) {
        self.undo.push(undo);
    }

    /// Undoes everything, newest first: registered undo steps (CNI DEL,
    /// servers), then the daemons (SIGTERM, SIGKILL after 5 s), the
    /// namespaces, the temporary directory and the record. Returns a line
    /// per failure (empty when everything went).
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        while let Some(undo) = self.undo.pop() {
            undo();
        }
        for (child, id) in &mut self.daemons {
            match id {
                Some(id) if child.try_wait().ok().flatten().is_none() => {
                    id.stop(Duration::from_secs(5));
                }
                None => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
            let _ = child.wait();
        }
        let mut problems = Vec::new();
        for name in self.record.namespaces.iter().rev() {
            delete_netns(name);
            if Path::new("/var/run/netns").join(name).exists() {
                problems.push(format!("netns {name} is still there"));
            }
        }
        if std::fs::remove_dir_all(&self.dir).is_err() && self.dir.exists() {
            problems.push(format!("{} is still there", self.dir.display()));
        }
        if problems.is_empty() {
            self.record.forget();
        }
        problems
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("podswitchd demo: cleanup: {problem}");
        }
    }
}

/// Runs `ip ARGS`; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    check(&out, &format!("ip {}", args.join(" ")))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
