//! Shared helpers for workspace-level tests: paths, pcap reading, the
//! independent oracle (etherparse) that checks frames the pipeline wrote,
//! ([`live`]) namespaces, a daemon runner and traffic for live tests, and
//! ([`k8s`]) a real Kubernetes control plane for tests that follow its API.

pub mod k8s;
pub mod live;
pub mod overlay_nodes;

use std::path::{Path, PathBuf};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use podswitch_dataplane::io::pcap::{PcapReader, PcapWriter};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The frames (timestamp, bytes) of a capture; panics with the file name on error.
pub fn read_pcap(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut reader = PcapReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(rec) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        out.push((rec.timestamp_ns, rec.data.to_vec()));
    }
    out
}

/// Writes frames as a pcap file.
pub fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
    for (ts, f) in frames {
        w.write_frame(*ts, f).expect("pcap record");
    }
    w.flush().expect("flush");
}

/// What the oracle found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// An ARP packet: (operation, sender MAC, sender IP, target MAC, target IP).
    Arp(u16, [u8; 6], [u8; 4], [u8; 6], [u8; 4]),
    /// An IPv4 packet whose checksums all verify.
    Ipv4(Ipv4Facts),
    /// Something else (IPv6, other EtherTypes): nothing to check.
    Other,
}

/// Facts about an IPv4 packet, read by etherparse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Facts {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src: [u8; 4],
    /// IPv4 destination.
    pub dst: [u8; 4],
    /// TTL.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Protocol number.
    pub protocol: u8,
    /// The IP payload (L4 header and data).
    pub payload: Vec<u8>,
    /// For ICMP: (type, code).
    pub icmp: Option<(u8, u8)>,
}

/// Parses `frame` with etherparse and checks every checksum in it against
/// etherparse's own computation. Returns an error text naming what is wrong.
pub fn oracle_check(frame: &[u8]) -> Result<Checked, String> {
    let sliced = SlicedPacket::from_ethernet(frame)
        .map_err(|e| format!("etherparse rejects the frame: {e}"))?;
    let eth = sliced
        .link
        .as_ref()
        .and_then(|l| l.to_header())
        .ok_or("no Ethernet header")?;
    let eth = match eth {
        etherparse::LinkHeader::Ethernet2(h) => h,
        other => return Err(format!("unexpected link header {other:?}")),
    };
    if let Some(etherparse::NetSlice::Arp(arp)) = &sliced.net {
        let take = |s: &[u8], n| -> Result<Vec<u8>, String> {
            if s.len() == n {
                Ok(s.to_vec())
            } else {
                Err("ARP address length".to_string())
            }
        };
        let sha: [u8; 6] = take(arp.sender_hw_addr(), 6)?.try_into().unwrap();
        let spa: [u8; 4] = take(arp.sender_protocol_addr(), 4)?.try_into().unwrap();
        let tha: [u8; 6] = take(arp.target_hw_addr(), 6)?.try_into().unwrap();
        let tpa: [u8; 4] = take(arp.target_protocol_addr(), 4)?.try_into().unwrap();
        return Ok(Checked::Arp(arp.operation().0, sha, spa, tha, tpa));
    }
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        return Ok(Checked::Other);
    };
    let header = ip.header().to_header();
    if header.header_checksum != header.calc_header_checksum() {
        return Err(format!(
            "IPv4 header checksum {:#06x}, expected {:#06x}",
            header.header_checksum,
            header.calc_header_checksum()
        ));
    }
    let fragmented = header.more_fragments || header.fragment_offset.value() != 0;
    let mut icmp = None;
    if !fragmented {
        match &sliced.transport {
            Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
                let expect = u
                    .to_header()
                    .calc_checksum_ipv4(&header, u.payload())
                    .map_err(|e| e.to_string())?;
                if u.checksum() != expect {
                    return Err(format!(
                        "UDP checksum {:#06x}, expected {expect:#06x}",
                        u.checksum()
                    ));
                }
            }
            Some(TransportSlice::Tcp(t)) => {
                let expect = t
                    .calc_checksum_ipv4(header.source, header.destination)
                    .map_err(|e| e.to_string())?;
                if t.checksum() != expect {
                    return Err(format!(
                        "TCP checksum {:#06x}, expected {expect:#06x}",
                        t.checksum()
                    ));
                }
            }
            Some(TransportSlice::Icmpv4(i)) => {
                let expect = i.icmp_type().calc_checksum(i.payload());
                if i.checksum() != expect {
                    return Err(format!(
                        "ICMP checksum {:#06x}, expected {expect:#06x}",
                        i.checksum()
                    ));
                }
                icmp = Some((i.type_u8(), i.code_u8()));
            }
            _ => {}
        }
    }
    Ok(Checked::Ipv4(Ipv4Facts {
        src_mac: eth.source,
        dst_mac: eth.destination,
        src: header.source,
        dst: header.destination,
        ttl: header.time_to_live,
        ident: header.identification,
        protocol: header.protocol.0,
        payload: ip.payload().payload.to_vec(),
        icmp,
    }))
}

/// The field names serde's derive gives a struct (its `deserialize_struct`
/// `fields` list), read without any input: the config reference test
/// checks the docs against these.
pub fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Catch(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields caught")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Stop {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Catch {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut catch = Catch(None);
    let _ = T::deserialize(&mut catch);
    catch.0.unwrap_or(&[])
}
