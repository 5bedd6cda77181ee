//! The image `deploy/build-image.sh` builds (FROM scratch, offline), run
//! with real podman: `podswitchd --version`, `podswitchctl --version`, the
//! CNI plugin's VERSION command with the shipped conflist's plugin entry on
//! stdin, `nft -f -` in the container's own network namespace, and
//! install-cni.sh (the DaemonSet's init container) writing the plugin and
//! the conflist into host directories mounted as its destinations.
//!
//! podman runs with a storage root, runroot and lock files of its own, so
//! nothing of the host's podman is touched. The binaries are
//! target/release's when they are newer than this test's own (so built from
//! the same sources), else this test's debug ones (no release build here).
//! Needs root, podman with runc, busybox-static and nftables; skips with
//! the reason otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use podswitch_tests::live::{cni_bin, ctl_bin, daemon_bin, root_or_skip};
use podswitch_tests::workspace;
use serde_json::Value;

/// A podman with its own storage, removed (images, mounts, files) on drop.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new() -> Podman {
        let dir = PathBuf::from(format!("/var/tmp/podswitch-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["storage", "runroot", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // A sandbox without CAP_SYS_RESOURCE cannot raise its hard nofile
        // limit to podman's default; runc and cgroupfs as in tests/podman/run.sh.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct passed, which lives across the call.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        let nofile = limit.rlim_max.min(1_048_576);
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n\
                 tmp_dir = \"{d}/tmp\"\nlock_type = \"file\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/runroot\"\n"
            ),
        )
        .unwrap();
        Podman { dir }
    }

    /// `cmd` with this podman's configuration in its environment.
    fn env(&self, mut cmd: Command) -> Command {
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"));
        cmd
    }

    /// `podman run --rm --network none [extra] IMAGE args`, `stdin` fed in; its output.
    fn run(&self, extra: &[&str], args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        let mut cmd = self.env(Command::new("podman"));
        cmd.args(["run", "--rm", "-i", "--network", "none"]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.args(extra).arg(IMAGE).args(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podman");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// As [`Podman::run`]; panics unless it succeeds, returns its stdout.
    fn run_ok(&self, extra: &[&str], args: &[&str], env: &[(&str, &str)], stdin: &str) -> String {
        let out = self.run(extra, args, env, stdin);
        succeeded(&format!("podman run {args:?}"), &out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut rmi = self.env(Command::new("podman"));
        let _ = rmi
            .args(["rmi", "-a", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The overlay driver mounts inside the storage root: unmount before removing.
        let prefix = format!("{}/", self.dir.display());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_unstable_by(|a, b| b.cmp(a));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stdout of `out`; panics with both outputs unless `what` succeeded.
fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const IMAGE: &str = "localhost/podswitch-image-test:latest";

/// The tools the image is built from; `None` when all are there, else what is missing.
fn missing_tools() -> Option<String> {
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = ["podman", "runc", "busybox", "nft", "ldd"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (apt-get install podman runc busybox-static nftables)",
            missing.join(", ")
        )
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A directory with podswitchd, podswitchctl and podswitch: links to
/// target/release's when all three are newer than this test's binaries,
/// else to this test's.
fn binaries(dir: &Path) -> &'static str {
    let ours = [
        ("podswitchd", daemon_bin()),
        ("podswitchctl", ctl_bin()),
        ("podswitch", cni_bin()),
    ];
    let release = workspace().join("target/release");
    let fresh =
        ours.iter().all(
            |(name, bin)| match (modified(&release.join(name)), modified(bin)) {
                (Some(r), Some(t)) => r >= t,
                _ => false,
            },
        );
    std::fs::create_dir_all(dir).unwrap();
    for (name, bin) in &ours {
        let source = if fresh {
            release.join(name)
        } else {
            bin.clone()
        };
        std::os::unix::fs::symlink(source, dir.join(name)).unwrap();
    }
    if fresh {
        "target/release"
    } else {
        "the tests' own"
    }
}

/// The shipped conflist's plugin entry as a CNI network configuration.
fn plugin_config() -> String {
    let path = workspace().join("cni/10-podswitch.conflist");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut plugin = list["plugins"][0].clone();
    plugin["cniVersion"] = list["cniVersion"].clone();
    plugin["name"] = list["name"].clone();
    plugin.to_string()
}

#[test]
fn the_image_builds_offline_and_its_programs_run() {
    if !root_or_skip("the_image_builds_offline_and_its_programs_run") {
        return;
    }
    if let Some(missing) = missing_tools() {
        eprintln!("skipping the_image_builds_offline_and_its_programs_run: {missing}");
        return;
    }
    let podman = Podman::new();
    let bins = podman.dir.join("bins");
    let which = binaries(&bins);
    let archive = podman.dir.join("podswitch.tar");
    let started = Instant::now();
    let mut build = podman.env(Command::new(workspace().join("deploy/build-image.sh")));
    let built = build
        .args(["--tag", IMAGE, "--bin-dir"])
        .arg(&bins)
        .arg("--save")
        .arg(&archive)
        .output()
        .expect("run deploy/build-image.sh");
    succeeded("deploy/build-image.sh", &built);
    eprintln!(
        "image built from {which} binaries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let listing = Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("manifest.json"),
        "--save wrote no docker-archive to {}",
        archive.display()
    );

    let version = format!("podswitchd {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        podman.run_ok(&[], &["podswitchd", "--version"], &[], ""),
        version
    );
    let ctl = podman.run_ok(&[], &["podswitchctl", "--version"], &[], "");
    assert_eq!(ctl, format!("podswitchctl {}\n", env!("CARGO_PKG_VERSION")));
    // The DaemonSet's entrypoint runs on the image's busybox sh.
    let entrypoint = [
        "/opt/podswitch/podswitchd-entrypoint.sh",
        "/usr/local/bin/podswitchd",
        "--version",
    ];
    assert_eq!(podman.run_ok(&[], &entrypoint, &[], ""), version);

    let answer = podman.run_ok(
        &[],
        &["/opt/podswitch/podswitch"],
        &[("CNI_COMMAND", "VERSION")],
        &plugin_config(),
    );
    let answer: Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("CNI VERSION answered {answer:?}: {e}"));
    assert_eq!(answer["cniVersion"], "1.0.0", "{answer}");
    let supported = answer["supportedVersions"].as_array().unwrap();
    assert!(supported.contains(&Value::from("1.0.0")), "{answer}");

    let ruleset = "table inet podswitch_image_test {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 9 drop\n }\n}\n";
    let listed = podman.run_ok(
        &["--cap-add", "NET_ADMIN"],
        &["sh", "-c", "nft -f - && nft list ruleset"],
        &[],
        ruleset,
    );
    assert!(listed.contains("tcp dport 9 drop"), "nft listed:\n{listed}");

    let host = podman.dir.join("host");
    let (bin_dest, conf_dest) = (host.join("opt/cni/bin"), host.join("etc/cni/net.d"));
    std::fs::create_dir_all(&bin_dest).unwrap();
    std::fs::create_dir_all(&conf_dest).unwrap();
    let volumes = [
        "-v".to_string(),
        format!("{}:/host/opt/cni/bin", bin_dest.display()),
        "-v".to_string(),
        format!("{}:/host/etc/cni/net.d", conf_dest.display()),
    ];
    let volumes: Vec<&str> = volumes.iter().map(String::as_str).collect();
    let install = [
        "/opt/podswitch/install-cni.sh",
        "--bin",
        "/opt/podswitch/podswitch",
        "--conflist",
        "/opt/podswitch/10-podswitch.conflist",
        "--bin-dest",
        "/host/opt/cni/bin",
        "--conf-dest",
        "/host/etc/cni/net.d",
    ];
    podman.run_ok(&volumes, &install, &[], "");
    assert_eq!(
        std::fs::read(conf_dest.join("10-podswitch.conflist")).unwrap(),
        std::fs::read(workspace().join("cni/10-podswitch.conflist")).unwrap(),
        "the installed conflist is the repository's"
    );
    let config = podman.dir.join("plugin.json");
    std::fs::write(&config, plugin_config()).unwrap();
    let installed = Command::new(bin_dest.join("podswitch"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::fs::File::open(&config).unwrap())
        .output()
        .expect("run the installed plugin");
    assert!(
        String::from_utf8_lossy(&installed.stdout).contains("supportedVersions"),
        "the installed plugin answered {installed:?}"
    );
}
