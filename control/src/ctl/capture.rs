//! `podswitchctl capture`: streams `POST /v1/capture` into a file or stdout.

use std::io::Write;

use serde::Serialize;

use super::context::{Ctx, value_name};
use super::{CaptureArgs, CaptureFormat, Failure};

/// The body of `POST /v1/capture`.
#[derive(Serialize)]
struct CaptureBody<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ports: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stages: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    filter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snaplen: Option<u32>,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_secs: Option<f64>,
}

/// Runs `capture`: the file is written as frames arrive, until `-c`, the
/// duration, the daemon, or the reader of stdout ends it.
pub(super) fn run(ctx: &mut Ctx<'_>, args: &CaptureArgs) -> Result<(), Failure> {
    let body = CaptureBody {
        ports: &args.select.ports,
        direction: args.select.direction.map(value_name),
        stages: args.select.stages.iter().map(|s| value_name(*s)).collect(),
        filter: args.filter.join(" "),
        snaplen: args.snaplen,
        format: match args.format {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::Pcapng => "pcapng",
        },
        count: args.count,
        duration_secs: args.duration,
    };
    if args.write.as_os_str() == "-" {
        ctx.client
            .stream_json("POST", "/v1/capture", &body, &mut *ctx.out)?;
        return Ok(());
    }
    let mut file = std::fs::File::create(&args.write)
        .map_err(|e| Failure::Local(format!("cannot create {}: {e}", args.write.display())))?;
    ctx.client
        .stream_json("POST", "/v1/capture", &body, &mut file)?;
    file.flush()?;
    Ok(())
}
