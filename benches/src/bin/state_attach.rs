//! How long a new process takes to attach the connection table a previous
//! one left in its state file (issue 24: 1,000,000 entries in ≤ 100 ms).
//!
//! ```sh
//! cargo build --release -p podswitch-benches --bin state_attach
//! target/release/state_attach fill /dev/shm/ps-attach 1000000   # one process fills
//! target/release/state_attach attach /dev/shm/ps-attach 1000000 kill    # after kill -9 (repeat)
//! target/release/state_attach attach /dev/shm/ps-attach 1000000 clean   # after SIGTERM or a takeover
//! ```
//!
//! `fill` sizes the table for the count (as `[conntrack] capacity`) and
//! inserts that many DNAT connections; `attach` first leaves the file as a
//! previous process would have (`kill`: in use; `clean`: marked closed,
//! its free lists kept), then opens it as `podswitchd run` does and prints
//! the time of each step ([`state::prepare`], which `podswitchd run
//! --takeover` does while the old process still forwards, and
//! [`StateHeader::settle`](state::StateHeader::settle), the part in the
//! forwarding gap) and the entries it found.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use podswitch_dataplane::conntrack::{ConnKey, Nat, Timeouts};
use podswitch_dataplane::nat::monotonic_ns;
use podswitch_dataplane::nat::state::{self, StateSpec};
use podswitch_dataplane::wire::IpProtocol;

fn spec(dir: &str, capacity: usize) -> StateSpec {
    StateSpec {
        path: PathBuf::from(dir).join("dataplane.state"),
        conntrack_capacity: capacity,
        timeouts: Timeouts::default(),
        affinity_capacity: podswitch_dataplane::nat::affinity::DEFAULT_AFFINITY_CAPACITY,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: state_attach fill DIR COUNT | attach DIR [CAPACITY [kill|clean]]";
    let (mode, dir) = match (args.get(1), args.get(2)) {
        (Some(m), Some(d)) => (m.as_str(), d.as_str()),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let count: usize = args
        .get(3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(dir).expect("create the directory");
    match mode {
        "fill" => {
            let _ = std::fs::remove_file(spec(dir, count).path);
            let kept = state::open(&spec(dir, count));
            let vip = (Ipv4Addr::new(10, 96, 0, 10), 80);
            let pod = (Ipv4Addr::new(10, 244, 1, 3), 8080);
            let now = monotonic_ns();
            for i in 0..count as u32 {
                let client = (
                    Ipv4Addr::from(0x0a00_0000 | (i >> 8)),
                    1024 + (i & 0xff) as u16,
                );
                let ct = &kept.conntrack;
                let shard = ct.shard_of(client.0, client.1, IpProtocol::TCP);
                ct.insert_with(
                    shard,
                    ConnKey::tcp(client, vip),
                    Nat::dnat(pod),
                    now,
                    |_, _| (),
                )
                .expect("insert");
            }
            println!("filled {} entries", kept.conntrack.len());
        }
        "attach" => {
            let clean = match args.get(4).map(String::as_str) {
                None | Some("kill") => false,
                Some("clean") => true,
                Some(_) => {
                    eprintln!("{usage}");
                    std::process::exit(2);
                }
            };
            // The previous process: it leaves the file in use (killed) or closed.
            let previous = state::open(&spec(dir, count));
            if let (true, Some(header)) = (clean, &previous.header) {
                header.mark_closed();
            }
            drop(previous);
            let kept = state::open(&spec(dir, count));
            let r = &kept.report;
            if let Some(reason) = &r.discarded {
                eprintln!("discarded: {reason}");
                std::process::exit(1);
            }
            println!(
                "attached {} entries in {:.1} ms: prepare {:.1} ms, settle {:.2} ms (previous process {}, lists {})",
                r.attached_entries,
                r.elapsed.as_secs_f64() * 1e3,
                (r.elapsed - r.settle).as_secs_f64() * 1e3,
                r.settle.as_secs_f64() * 1e3,
                if r.clean { "stopped cleanly" } else { "killed" },
                if r.rebuilt {
                    "made from the entries"
                } else {
                    "kept"
                },
            );
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
