//! The `podswitch` CNI plugin: attaches pods to podswitchd.
//!
//! The runtime executes the binary once per operation with `CNI_*`
//! variables ([`env`]) and the network configuration on stdin
//! ([`config`]). ADD reserves an address in a host-local style store
//! ([`ipam`]), never one a podswitchd port already holds, and asks the daemon for a TAP port placed in the pod
//! ([`attach`]); DEL, CHECK, GC and STATUS are in [`commands`]. Results are
//! printed on stdout in the request's `cniVersion` (0.4.0, 1.0.0, 1.1.0);
//! errors as `{cniVersion, code, msg, details}` on stdout with exit code 1;
//! logs go to stderr, or to `logFile` from the configuration.
//!
//! Error codes: 1 incompatible version; 2 unsupported field (`ipam.type`);
//! 4 bad or missing `CNI_*` variable (named), including `CNI_ARGS IP=`
//! outside every range; 5 I/O; 6 stdin not a JSON object; 7 invalid
//! configuration (key and value named; also a missing `prevResult` on
//! CHECK); 11 try again later (daemon unreachable, IPAM lock busy);
//! 50/51 STATUS (daemon unreachable / not forwarding). Plugin codes:
//! 100 no free address, 101 address conflict (duplicate ADD, requested IP
//! reserved or a port's), 102 the daemon refused the request (its message follows),
//! 103 `CNI_IFNAME` exists in the container, 104 CHECK found a difference.
//!
//! Limits: the dataplane configures IPv4 only, so IPv6 ranges are
//! allocated and reported but not placed on the pod interface. `ipMasq`
//! becomes the port's `masquerade` (absent: the node's `[nat] masquerade`).
//!
//! ```no_run
//! // src/main.rs
//! fn main() -> std::process::ExitCode {
//!     podswitch_cni::main()
//! }
//! ```

pub mod attach;
pub mod cidr;
pub mod commands;
pub mod config;
pub mod env;
pub mod ipam;
pub mod netcheck;
pub mod types;

use std::io::{Read, Write};
use std::process::ExitCode;

use crate::env::{Command, Env};
use crate::types::{CniError, LATEST_VERSION, SUPPORTED_VERSIONS};

/// What one invocation prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout (a result, an error, or nothing).
    pub stdout: String,
    /// The error, if the invocation failed (exit code 1).
    pub error: Option<CniError>,
    /// A line for the log.
    pub log: String,
}

/// Runs one invocation with variables from `get` and `stdin`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = config::request_version(stdin).unwrap_or_else(|| LATEST_VERSION.to_string());
    let env = match Env::from_lookup(get) {
        Ok(env) => env,
        Err(e) => return failure(&version, "env", e),
    };
    let what = format!("{:?} {}/{}", env.command, env.container_id, env.ifname);
    if env.command == Command::Version {
        let out =
            serde_json::json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS});
        return success(out.to_string(), what);
    }
    let config = match config::parse(stdin) {
        Ok(config) => config,
        Err(e) => return failure(&version, &what, e),
    };
    let result = match env.command {
        Command::Add => commands::add(&env, &config).map(|r| r.to_string()),
        Command::Del => commands::del(&env, &config).map(|()| String::new()),
        Command::Check => commands::check(&env, &config).map(|()| String::new()),
        Command::Gc => commands::gc(&config).map(|()| String::new()),
        Command::Status => commands::status(&config).map(|()| String::new()),
        Command::Version => unreachable!("answered above"),
    };
    match result {
        Ok(stdout) => {
            let log = format!("{what}: ok {stdout}");
            success(stdout, log)
        }
        Err(e) => failure(&config.cni_version, &what, e),
    }
}

fn success(stdout: String, log: String) -> Outcome {
    Outcome {
        stdout,
        error: None,
        log,
    }
}

fn failure(version: &str, what: &str, error: CniError) -> Outcome {
    Outcome {
        stdout: error.to_json(version).to_string(),
        log: format!("{what}: {error}"),
        error: Some(error),
    }
}

/// The binary: reads the environment and stdin, prints the outcome.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().take(16 << 20).read_to_end(&mut stdin) {
        Ok(_) => run(|name| std::env::var(name).ok(), &stdin),
        Err(e) => failure(
            LATEST_VERSION,
            "stdin",
            CniError::io(format!("read stdin: {e}")),
        ),
    };
    log_line(&stdin, &outcome.log);
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    if outcome.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Appends `line` to the configured `logFile`, else writes it to stderr.
fn log_line(stdin: &[u8], line: &str) {
    let log_file = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["logFile"].as_str().map(str::to_string));
    let line = format!("podswitch-cni[{}]: {line}\n", std::process::id());
    if let Some(path) = log_file
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    {
        let _ = file.write_all(line.as_bytes());
        return;
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests;
