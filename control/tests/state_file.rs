//! A damaged `state.redb`: podswitchd never panics on it and never takes it
//! for "no state"; it refuses to start, naming the file and how to recover.
//! Damage tried: an empty file, a file overwritten with random bytes, and
//! random bytes written over parts of a file holding state (its services
//! as JSON values, as earlier builds wrote them, or as binary records).

use std::path::Path;
use std::process::Command;

use podswitch_control::store::{Change, Store, TableId};

mod common;
use common::TempDir;

fn temp_dir(tag: &str) -> TempDir {
    let dir = common::temp_dir("state-file", tag);
    std::fs::create_dir_all(&*dir).unwrap();
    dir
}

/// Deterministic noise (xorshift64*), so a failure can be replayed.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// A state directory whose database holds some services and port ids.
fn stored_state(dir: &Path) {
    stored_state_as(dir, Stored::Json);
}

/// How services are stored.
#[derive(Clone, Copy, Debug)]
enum Stored {
    /// JSON values, as builds before the binary records wrote them.
    Json,
    /// Binary records with endpoints.
    Records,
}

fn stored_state_as(dir: &Path, stored: Stored) {
    let store = Store::open(dir).unwrap();
    let mut changes = Vec::new();
    for i in 0..200 {
        let name = format!("default/svc-{i}");
        let value = serde_json::json!({
            "name": name, "cluster_ip": format!("10.96.{}.{}", i / 250, i % 250 + 1),
            "ports": [{"protocol": "TCP", "port": 80, "target_port": 8080}],
        });
        changes.push(match stored {
            Stored::Json => Change::put(TableId::Services, &name, &value),
            Stored::Records => Change::service(&name, &serde_json::from_value(value).unwrap()),
        });
        if let Stored::Records = stored {
            let endpoints: Vec<_> = (0..3)
                .map(|e| serde_json::json!({"address": format!("10.244.{i}.{e}"), "node": "n1"}))
                .map(|e| serde_json::from_value(e).unwrap())
                .collect();
            changes.push(Change::endpoints(&name, &endpoints));
        }
    }
    changes.push(Change::put(
        TableId::Meta,
        "port_ids",
        &serde_json::json!({"pod-a": 0}),
    ));
    store.commit(&changes).unwrap();
}

/// Opens and loads `dir`'s store without letting a panic escape the test:
/// `Ok` with the loaded state, or the error's full message.
fn open_and_load(dir: &Path) -> Result<podswitch_control::state::ApiState, String> {
    let dir = dir.to_path_buf();
    let outcome = std::panic::catch_unwind(move || {
        Store::open(&dir)
            .and_then(|store| store.load())
            .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
    });
    match outcome {
        Ok(result) => result,
        Err(panic) => panic!(
            "the store panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(panic.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        ),
    }
}

fn assert_names_file_and_recovery(message: &str, file: &Path) {
    assert!(
        message.contains(&file.display().to_string()),
        "the file is named: {message}"
    );
    let file = file.display();
    assert!(
        message.contains(&format!("mv {file} {file}.damaged")),
        "the error says how to recover: {message}"
    );
}

#[test]
fn an_empty_state_file_is_refused_not_taken_for_no_state() {
    let dir = temp_dir("empty");
    let file = dir.join("state.redb");
    std::fs::write(&file, b"").unwrap();
    let message = open_and_load(&dir).expect_err("an empty state file is damage");
    assert!(message.contains("empty"), "{message}");
    assert_names_file_and_recovery(&message, &file);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the damaged file is left as it was"
    );
}

#[test]
fn a_state_file_overwritten_with_noise_is_refused() {
    let dir = temp_dir("noise");
    stored_state(&dir);
    let file = dir.join("state.redb");
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    let intact = std::fs::read(&file).unwrap();
    // The whole file, or all but redb's header (where redb used to panic).
    for start in [0, 512, 4096] {
        for seed in 1..=4u64 {
            let mut bytes = intact.clone();
            Noise(seed).fill(&mut bytes[start..len]);
            std::fs::write(&file, &bytes).unwrap();
            let message = open_and_load(&dir).expect_err("noise is no state");
            assert_names_file_and_recovery(&message, &file);
        }
    }
}

#[test]
fn noise_over_part_of_a_state_file_never_panics_nor_loses_state_silently() {
    noise_over_part_of(Stored::Json);
}

#[test]
fn noise_over_part_of_a_state_file_of_records_never_panics_nor_loses_state_silently() {
    noise_over_part_of(Stored::Records);
}

fn noise_over_part_of(stored: Stored) {
    let dir = temp_dir(&format!("partial-{stored:?}"));
    stored_state_as(&dir, stored);
    let file = dir.join("state.redb");
    let intact = std::fs::read(&file).unwrap();
    let want = open_and_load(&dir).unwrap();
    assert_eq!(want.services.len(), 200);
    let mut noise = Noise(0x5eed);
    let (mut refused, mut cases) = (0, 0);
    for chunk in [16usize, 512, 4096] {
        for offset in (0..intact.len().saturating_sub(chunk)).step_by(intact.len() / 24 + 1) {
            let mut bytes = intact.clone();
            noise.fill(&mut bytes[offset..offset + chunk]);
            std::fs::write(&file, &bytes).unwrap();
            cases += 1;
            match open_and_load(&dir) {
                // Noise over free pages changes nothing stored.
                Ok(state) => assert_eq!(state, want, "{chunk} bytes at {offset} changed the state"),
                Err(message) => {
                    refused += 1;
                    assert_names_file_and_recovery(&message, &file);
                    let kept = std::fs::read(&file).unwrap() == bytes;
                    assert!(
                        kept,
                        "{chunk} bytes at {offset}: the damaged file was written to"
                    );
                }
            }
        }
    }
    assert!(refused > 0, "none of {cases} damaged files was refused");
}

#[test]
fn podswitchd_refuses_to_start_on_a_damaged_state_file() {
    let dir = temp_dir("daemon");
    stored_state(&dir);
    let file = dir.join("state.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    Noise(7).fill(&mut bytes[4096..]);
    std::fs::write(&file, &bytes).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "[node]\nname = \"state-test\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_podswitchd"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--api-socket")
        .arg(dir.join("run/api.sock"))
        .arg("--state-dir")
        .arg(&*dir)
        .arg("--workers")
        .arg("1")
        .output()
        .expect("run podswitchd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_names_file_and_recovery(&stderr, &file);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the file is kept as it was"
    );
}
