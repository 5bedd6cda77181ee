//! The demo's crash record: everything a `podswitchd demo` creates (network
//! namespaces, the processes it starts, its temporary directory) is written
//! to `/run/podswitch-demo/<pid>.json` *before* it is created, so that a
//! demo killed with `kill -9` can be cleaned up by the next one.
//!
//! A process is identified by its pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`) and its `argv[0]`: a recycled pid never matches, so
//! the cleanup never signals a process the demo did not start.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

/// Where the records live (one file per running demo).
pub const RECORD_DIR: &str = "/run/podswitch-demo";

/// A process, identified well enough to never signal a stranger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// Its `argv[0]`.
    pub argv0: String,
}

impl ProcessId {
    /// Reads the identity of the live process `pid`; `None` if it is gone,
    /// a zombie, or in the middle of `exec` (its command line still empty).
    pub fn of(pid: u32) -> Option<ProcessId> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may contain spaces and parentheses.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_name.split_whitespace();
        let state = fields.next()?;
        if state == "Z" || state == "X" {
            return None;
        }
        // Fields 4..=22 follow the state (field 3): the start time is the 19th of them.
        let start_ticks = fields.nth(18)?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if argv0.is_empty() {
            return None;
        }
        Some(ProcessId {
            pid,
            start_ticks,
            argv0: String::from_utf8_lossy(argv0).into_owned(),
        })
    }

    /// True while this very process (same pid, start time and argv[0]) runs.
    pub fn is_running(&self) -> bool {
        ProcessId::of(self.pid).as_ref() == Some(self)
    }

    /// SIGTERM, then SIGKILL after `grace`, if (and only if) this very
    /// process still runs. Returns true once it is gone.
    pub fn stop(&self, grace: Duration) -> bool {
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return true;
        };
        for (signal, wait) in [
            (Signal::TERM, grace),
            (Signal::KILL, Duration::from_secs(2)),
        ] {
            if !self.is_running() {
                return true;
            }
            let _ = kill_process(pid, signal);
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline && self.is_running() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        !self.is_running()
    }
}

/// What one demo created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The demo process itself.
    pub demo: ProcessId,
    /// Network namespaces (`ip netns` names).
    pub namespaces: Vec<String>,
    /// Processes it started (the node daemons).
    pub processes: Vec<ProcessId>,
    /// Directories it created.
    pub dirs: Vec<PathBuf>,
}

impl Record {
    /// An empty record for the calling process.
    pub fn for_this_process() -> io::Result<Record> {
        let demo = ProcessId::of(std::process::id())
            .ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
        Ok(Record {
            demo,
            namespaces: Vec::new(),
            processes: Vec::new(),
            dirs: Vec::new(),
        })
    }

    /// This record's file.
    pub fn path(&self) -> PathBuf {
        Path::new(RECORD_DIR).join(format!("{}.json", self.demo.pid))
    }

    /// Writes the record (atomically: a temporary file renamed over it).
    pub fn save(&self) -> io::Result<()> {
        std::fs::create_dir_all(RECORD_DIR)?;
        let path = self.path();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// Removes the record's file.
    pub fn forget(&self) {
        let _ = std::fs::remove_file(self.path());
    }

    /// Removes what the record lists, in dependency order: processes first
    /// (they hold sockets in the namespaces), then namespaces, then
    /// directories. Returns one line per thing removed.
    pub fn remove_all(&self) -> Vec<String> {
        let mut done = Vec::new();
        for process in &self.processes {
            if process.is_running() {
                let how = if process.stop(Duration::from_secs(3)) {
                    "stopped"
                } else {
                    "could not stop"
                };
                done.push(format!("{how} podswitchd pid {}", process.pid));
            }
        }
        for name in self.namespaces.iter().rev() {
            if delete_netns(name) {
                done.push(format!("deleted netns {name}"));
            }
        }
        for dir in &self.dirs {
            if dir.exists() && std::fs::remove_dir_all(dir).is_ok() {
                done.push(format!("removed {}", dir.display()));
            }
        }
        done
    }
}

/// `ip netns del NAME`; true if it existed and is gone.
pub fn delete_netns(name: &str) -> bool {
    if !Path::new("/var/run/netns").join(name).exists() {
        return false;
    }
    Command::new("ip")
        .args(["netns", "del", name])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Cleans up after demos that died without cleaning up (their process is
/// gone but their record is not). Records of demos still running are left
/// alone. Returns one line per thing removed.
pub fn clean_stale() -> Vec<String> {
    clean_stale_in(Path::new(RECORD_DIR))
}

/// [`clean_stale`] for the records in `dir`.
fn clean_stale_in(dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return done;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let record: Option<Record> = std::fs::read(&path)
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok());
        let Some(record) = record else {
            done.push(format!("removed unreadable record {}", path.display()));
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if record.demo.is_running() {
            continue;
        }
        done.push(format!(
            "the demo with pid {} ended without cleaning up (record {})",
            record.demo.pid,
            path.display()
        ));
        done.extend(record.remove_all());
        let _ = std::fs::remove_file(&path);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity of a just spawned child, once its `exec` is complete.
    fn identity(child: &std::process::Child) -> ProcessId {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match ProcessId::of(child.id()) {
                Some(id) => return id,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                None => panic!("no identity for pid {}", child.id()),
            }
        }
    }

    #[test]
    fn identifies_this_process_and_rejects_a_changed_start_time() {
        let me = ProcessId::of(std::process::id()).expect("own /proc entry");
        assert!(me.is_running());
        assert!(!me.argv0.is_empty());
        let recycled = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(
            !recycled.is_running(),
            "another start time is another process"
        );
        let other_exe = ProcessId {
            argv0: "/bin/something-else".into(),
            ..me
        };
        assert!(!other_exe.is_running());
    }

    #[test]
    fn a_finished_child_is_not_running_and_stop_leaves_it_alone() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let id = identity(&child);
        assert!(id.is_running());
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!id.is_running());
        assert!(id.stop(Duration::from_millis(10)));
    }

    #[test]
    fn stop_ends_a_running_child() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let id = identity(&child);
        let reaper = std::thread::spawn(move || child.wait());
        assert!(id.stop(Duration::from_secs(2)));
        assert!(!reaper.join().unwrap().expect("wait").success());
    }

    #[test]
    fn record_round_trips_through_json() {
        let record = Record {
            demo: ProcessId::of(std::process::id()).unwrap(),
            namespaces: vec!["psdemo1-node-a".into()],
            processes: vec![],
            dirs: vec![PathBuf::from("/tmp/psdemo1")],
        };
        let text = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back.demo, record.demo);
        assert_eq!(back.namespaces, record.namespaces);
        assert_eq!(back.dirs, record.dirs);
    }

    #[test]
    fn clean_stale_removes_what_a_dead_demo_left_and_spares_a_live_one() {
        let root = std::env::temp_dir().join(format!("psdemo-record-test-{}", std::process::id()));
        let records = root.join("records");
        let leftover_dir = root.join("leftover");
        std::fs::create_dir_all(&records).unwrap();
        std::fs::create_dir_all(&leftover_dir).unwrap();
        let mut daemon = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let daemon_id = identity(&daemon);
        let reaper = std::thread::spawn(move || daemon.wait());
        let me = ProcessId::of(std::process::id()).unwrap();
        let dead_demo = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        let dead = Record {
            demo: dead_demo,
            namespaces: vec![],
            processes: vec![daemon_id.clone()],
            dirs: vec![leftover_dir.clone()],
        };
        let live = Record {
            demo: me,
            namespaces: vec![],
            processes: vec![],
            dirs: vec![root.clone()],
        };
        std::fs::write(records.join("1.json"), serde_json::to_vec(&dead).unwrap()).unwrap();
        std::fs::write(records.join("2.json"), serde_json::to_vec(&live).unwrap()).unwrap();
        std::fs::write(records.join("3.json"), b"not json").unwrap();

        let done = clean_stale_in(&records);
        assert!(
            done.iter()
                .any(|l| l.contains(&format!("stopped podswitchd pid {}", daemon_id.pid))),
            "{done:?}"
        );
        assert!(!daemon_id.is_running());
        assert!(!reaper.join().unwrap().expect("wait").success());
        assert!(!leftover_dir.exists());
        assert!(!records.join("1.json").exists());
        assert!(!records.join("3.json").exists());
        assert!(
            records.join("2.json").exists(),
            "a running demo's record stays"
        );
        assert!(root.exists(), "a running demo's directory stays");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
