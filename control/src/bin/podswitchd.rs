//! podswitchd: the podswitch node service.
//!
//! Today it offers `replay` (captured frames through the pipeline, offline);
//! `run` (the live node service) comes with the TAP/AF_PACKET ports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use podswitch_dataplane::replay::{ReplayInput, replay_files};

#[derive(Parser)]
#[command(
    name = "podswitchd",
    version,
    about = "podswitch node dataplane service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Feed captured frames through the pipeline and write what each port would send.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Node configuration (TOML); see config/node.example.toml.
    #[arg(long)]
    config: PathBuf,
    /// Input capture (pcap or pcapng). Repeat for several inputs; `PORT=FILE`
    /// sends that file's frames into PORT (inputs are merged by timestamp).
    #[arg(long = "in", value_name = "[PORT=]FILE", required = true)]
    inputs: Vec<String>,
    /// Port the frames of plain `--in FILE` inputs enter on (default: the first port).
    #[arg(long)]
    port: Option<String>,
    /// Directory for `<port>.pcap` per port, `summary.txt` and `summary.json`.
    #[arg(long)]
    out_dir: PathBuf,
}

fn parse_inputs(args: &ReplayArgs) -> Vec<ReplayInput> {
    args.inputs
        .iter()
        .map(|s| match s.split_once('=') {
            Some((port, file)) if !port.is_empty() && !port.contains('/') => ReplayInput {
                port: Some(port.to_string()),
                path: PathBuf::from(file),
            },
            _ => ReplayInput {
                port: args.port.clone(),
                path: PathBuf::from(s),
            },
        })
        .collect()
}

fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let inputs = parse_inputs(args);
    let report = replay_files(&args.config, &inputs, &args.out_dir).context("replay failed")?;
    print!("{}", report.summary.to_text());
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "wrote {} files to {}",
        report.written.len(),
        args.out_dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay(args) => replay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
