//! podswitchd's log lines carry no ANSI colour codes when stderr is not a
//! terminal (journald, `kubectl logs`, a file): the daemon runs with stderr
//! to a file until it logs "forwarding" and "API listening", then stops on
//! SIGTERM; not one ESC byte may be in what it wrote.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

const CONFIG: &str = "[node]\nname = \"plain-logs\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

/// Runs podswitchd with no ports, stderr to a file, `env` added; returns what it logged.
fn logs_of_a_run(tag: &str, env: &[(&str, &str)]) -> String {
    let dir = common::temp_dir("plain-logs", tag);
    std::fs::create_dir_all(&*dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = common::podswitchd_run(&dir);
    cmd.arg("--config")
        .arg(&config)
        .env_remove("NO_COLOR")
        .env("PODSWITCH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run podswitchd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
        if text.contains("API listening") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        // SAFETY: a signal to the child this test started; no memory is involved.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    assert!(
        status.success() && text.contains("forwarding") && text.contains("stopping"),
        "podswitchd did not start and stop cleanly ({status}):\n{text}"
    );
    text
}

fn assert_plain(text: &str) {
    if let Some(at) = text.find('\x1b') {
        let line = text[..at].lines().count();
        panic!(
            "an ESC byte in line {line} of the log:\n{}",
            text.escape_debug()
        );
    }
}

#[test]
fn logs_to_a_file_have_no_colour_codes() {
    assert_plain(&logs_of_a_run("file", &[]));
}

#[test]
fn logs_have_no_colour_codes_with_no_color_set() {
    assert_plain(&logs_of_a_run("no-color", &[("NO_COLOR", "1")]));
}
