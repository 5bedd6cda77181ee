//! The captures in `pcaps/` read back as `pcaps/README.md` describes them.
//!
//! Re-recording with `pcaps/record.sh` can move the TCP frame counts by a
//! few; update the table in the README and the counts here together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podswitch_dataplane::io::PcapReader;
use podswitch_dataplane::wire::{EtherType, Ipv4Packet, L2Header, MacAddr};

const POD_A: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
const POD_B: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x03]);
const GATEWAY: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01]);

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcaps")
        .join(name)
}

/// Every frame of `name`, parsed down to L2.
fn frames(name: &str) -> Vec<(L2Header, Vec<u8>)> {
    let mut reader = PcapReader::open(pcap(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = Vec::new();
    while let Some(record) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    {
        assert!(
            record.is_ethernet() && !record.is_truncated(),
            "{name}: {record:?}"
        );
        let l2 = L2Header::parse(record.data).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((l2, record.data.to_vec()));
    }
    out
}

#[test]
fn frame_counts_match_the_readme() {
    for (name, count) in [
        ("arp-gateway.pcap", 4),
        ("ping-gateway.pcap", 10),
        ("l2-pod-to-pod.pcap", 302),
        ("routed.pcap", 22),
        ("routed-up0.pcap", 22),
        ("small-udp.pcap", 20_000),
        ("small-udp-routed.pcap", 20_000),
    ] {
        assert_eq!(frames(name).len(), count, "{name}");
    }
}

#[test]
fn arp_gateway_is_request_reply_echo() {
    let f = frames("arp-gateway.pcap");
    let ethertypes: Vec<EtherType> = f.iter().map(|(l2, _)| l2.ethertype).collect();
    assert_eq!(
        ethertypes,
        [
            EtherType::ARP,
            EtherType::ARP,
            EtherType::IPV4,
            EtherType::IPV4
        ]
    );
    assert!(f[0].0.dst.is_broadcast() && f[0].0.src == POD_A);
    assert_eq!((f[1].0.src, f[1].0.dst), (GATEWAY, POD_A));
}

/// 60-byte frames (no FCS) from pod-a over 64 UDP source ports, with valid IPv4 checksums.
#[test]
fn small_udp_is_minimum_size_over_64_flows() {
    for (name, dst_mac) in [
        ("small-udp.pcap", POD_B),
        ("small-udp-routed.pcap", GATEWAY),
    ] {
        let mut src_ports = BTreeSet::new();
        for (l2, data) in frames(name) {
            assert_eq!(data.len(), 60, "{name}");
            assert_eq!(
                (l2.src, l2.dst, l2.ethertype),
                (POD_A, dst_mac, EtherType::IPV4),
                "{name}"
            );
            let ip = Ipv4Packet::new_checked(&data[l2.l3_offset..]).unwrap();
            assert!(ip.verify_checksum(), "{name}");
            src_ports.insert(u16::from_be_bytes([ip.payload()[0], ip.payload()[1]]));
        }
        assert_eq!(src_ports, (42_000..42_064).collect(), "{name}");
    }
}
