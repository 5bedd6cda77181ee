//! Capture files out of mirror records: classic pcap, or pcapng with a
//! comment per packet (stage, ports, verdict or drop reason, NAT rewrite).
//!
//! Consumer side only (never on the forwarding path): these functions append
//! to a `Vec<u8>` that is then written to a file or a stream.

use super::{MirrorNote, MirrorRecord, MirrorStage};
use crate::packet::{PortId, Verdict};

/// Classic pcap magic for nanosecond timestamps.
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u16 = 1;

/// A classic pcap file header (nanosecond timestamps, Ethernet).
pub fn pcap_header(out: &mut Vec<u8>, snaplen: u32) {
    out.extend_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
}

/// One classic pcap record.
pub fn pcap_record(out: &mut Vec<u8>, record: &MirrorRecord) {
    let data = record.data();
    let ts = record.timestamp_ns;
    out.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((ts % 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.orig_len.max(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0u8, pad4(value.len())));
}

/// Appends a block: type, total length, body, total length.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// A pcapng section header and one Ethernet interface (nanosecond
/// timestamps) named `if_name`.
pub fn pcapng_header(out: &mut Vec<u8>, snaplen: u32, if_name: &str) {
    let mut shb = Vec::with_capacity(64);
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut shb, 4, b"podswitch"); // shb_userappl
    option(&mut shb, 0, &[]);
    block(out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::with_capacity(64);
    idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut idb, 2, if_name.as_bytes()); // if_name
    option(&mut idb, 9, &[9]); // if_tsresol: 10^-9
    option(&mut idb, 0, &[]);
    block(out, 1, &idb);
}

/// One enhanced packet block with `comment` as its `opt_comment`.
pub fn pcapng_record(out: &mut Vec<u8>, record: &MirrorRecord, comment: &str) {
    let data = record.data();
    let mut epb = Vec::with_capacity(32 + data.len() + comment.len());
    epb.extend_from_slice(&0u32.to_le_bytes()); // interface 0
    let ts = record.timestamp_ns;
    epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
    epb.extend_from_slice(&(ts as u32).to_le_bytes());
    epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
    epb.extend_from_slice(&record.orig_len.max(data.len() as u32).to_le_bytes());
    epb.extend_from_slice(data);
    epb.extend(std::iter::repeat_n(0u8, pad4(data.len())));
    if !comment.is_empty() {
        option(&mut epb, 1, comment.as_bytes()); // opt_comment
        option(&mut epb, 0, &[]);
    }
    block(out, 6, &epb);
}

/// The per-packet comment: `stage=drop in=pod-a reason=spoofed_src_ip`,
/// `stage=egress in=pod-a out=pod-b verdict=forward`,
/// `stage=post-nat in=pod-a nat=dnat 10.96.0.10:80->10.244.1.5:8080`.
/// `port_name` turns a port id into its name.
pub fn comment(note: &MirrorNote, port_name: impl Fn(PortId) -> String) -> String {
    let mut s = format!("stage={}", note.stage);
    let name = |p: PortId| {
        if p == PortId::LOCAL {
            "switch".to_string()
        } else {
            port_name(p)
        }
    };
    s.push_str(&format!(" in={}", name(note.in_port)));
    if let Some(out) = note.out_port {
        s.push_str(&format!(" out={}", name(out)));
    }
    match note.verdict {
        Some(Verdict::Drop(reason)) => s.push_str(&format!(" verdict=drop reason={reason}")),
        Some(Verdict::Forward(p)) if note.stage != MirrorStage::Egress => {
            s.push_str(&format!(" verdict=forward:{}", name(p)))
        }
        Some(Verdict::Flood) => s.push_str(" verdict=flood"),
        Some(Verdict::Consumed) => s.push_str(" verdict=consumed"),
        Some(Verdict::Held) => s.push_str(" verdict=held"),
        Some(Verdict::Forward(_)) => s.push_str(" verdict=forward"),
        None => {}
    }
    if let Some(nat) = note.nat {
        s.push_str(&format!(
            " nat={} {}:{}->{}:{}",
            nat.kind.as_str(),
            nat.from.0,
            nat.from.1,
            nat.to.0,
            nat.to.1
        ));
    }
    s
}
