//! The podswitch CNI plugin driven by a real runtime: podman 4.x with the CNI
//! backend, two busybox containers, ping and HTTP between them, `podman
//! network reload` keeps the address, `podman rm` releases it. Everything runs
//! in a private network namespace (see `tests/podman/run.sh`).
//!
//! Needs root; `run.sh` installs podman, runc and busybox-static with apt-get
//! when they are missing and exits 77 (skip) when it cannot.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use podswitch_tests::live::{ctl_bin, daemon_bin, root_or_skip};
use podswitch_tests::workspace;

/// The CNI plugin built for tests: `$PODSWITCH_CNI_BIN`, or
/// `podswitch-cni-under-test` next to the daemon binary (target/<profile>/).
fn plugin_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODSWITCH_CNI_BIN") {
        return PathBuf::from(bin);
    }
    daemon_bin().with_file_name("podswitch-cni-under-test")
}

/// Both CNI versions podman 4.3 speaks, one after the other (one apt-get, one
/// podman at a time on small CI machines).
#[test]
fn podman_cni() {
    if !root_or_skip("podman_cni") {
        return;
    }
    let plugin = plugin_bin();
    assert!(
        plugin.exists(),
        "the podswitch CNI plugin binary {} does not exist: build it as the tests \
         package's `podswitch-cni-under-test` bin (or set PODSWITCH_CNI_BIN)",
        plugin.display()
    );
    let script = workspace().join("tests/podman/podswitch.sh");
    let start = Instant::now();
    let status = Command::new("timeout")
        .args(["--kill-after=10", "900"])
        .arg(&script)
        .env("PODSWITCHD", daemon_bin())
        .env("PODSWITCHCTL", ctl_bin())
        .env("PLUGIN", &plugin)
        .env("CNI_VERSIONS", "0.4.0 1.0.0")
        .status()
        .expect("run tests/podman/podswitch.sh");
    match status.code() {
        Some(0) => eprintln!(
            "podman + podswitch, cniVersion 0.4.0 and 1.0.0: pass in {:.1} s",
            start.elapsed().as_secs_f64()
        ),
        Some(77) => eprintln!("skipping podman_cni: podman unavailable (reason above)"),
        _ => panic!("tests/podman/podswitch.sh failed: {status}; logs above"),
    }
}
