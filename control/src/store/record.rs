//! The stored form of services and endpoint lists: a compact binary record.
//!
//! A declarative apply of 100,000 services writes 200,000 values in one
//! transaction; as JSON they were 98 MB, and redb's time goes with the
//! bytes written (about 0.9 s for 70 MB on the benchmark machine, fsync
//! included). These records are about a fifth of that and are encoded
//! and decoded without a parser. The other tables (ports, routes, nodes,
//! mirrors, meta) hold a few values each and stay JSON.
//!
//! A record starts with [`FORMAT`], a byte no JSON text starts with, and
//! ends with a 32-bit checksum of the bytes before it: noise over a stored
//! value is found (as damage naming the key) rather than read as another
//! valid service, as a JSON text would almost always have been. A
//! value that does not is JSON as earlier builds wrote it, and is read as
//! such. Nothing rewrites a store wholesale: a key is written in this form
//! when it changes, so a file that a newer build opened without changing
//! a service (a takeover given up before its end) is still read by the
//! build before it.
//!
//! Written by hand rather than with a binary serde format: the types'
//! serde form leaves fields out for the JSON API (`skip_serializing_if`),
//! which a format without field names cannot read back, so a crate would
//! need a mirror of each type as well. Every field is named once in
//! [`put_service`] and [`put_endpoints`] through a destructuring without
//! `..`, so a field added to [`Service`] or [`Endpoint`] does not compile
//! until it is stored.
//!
//! Layout (integers are LEB128, a string is its length then UTF-8, an
//! address 4 bytes in network order, an option of an integer is 0 for
//! none and the value plus one otherwise):
//!
//! - service: `FORMAT`, name, cluster IP, port count, per port (name,
//!   protocol, port, target port option, node port option), session
//!   affinity, affinity timeout, external address count and addresses,
//!   external and internal traffic policy, source (0 api, 1 kubernetes);
//! - endpoint list: `FORMAT`, count, per endpoint (address, flags: bit 0
//!   ready, 1 terminating, 2 serving given, 3 serving; node name, port
//!   map count, per pair: name, port);
//! - then the checksum of every byte before it (little-endian `u32`).

use std::net::Ipv4Addr;

use compact_str::CompactString;

use crate::state::{Endpoint, NodeName, PortMap, Service, ServicePort, Source};

/// First byte of a record (a JSON value starts with `{` or `[`).
pub const FORMAT: u8 = 0x02;

const READY: u8 = 1;
const TERMINATING: u8 = 1 << 1;
const SERVING_GIVEN: u8 = 1 << 2;
const SERVING: u8 = 1 << 3;

/// Bytes of the checksum at a record's end.
const CHECKSUM_LEN: usize = 4;

/// A 32-bit checksum of `bytes`: eight bytes at a time through a multiply
/// and a rotation, then the splitmix64 finaliser (any change of up to 64
/// bits in one word changes it; other noise goes unnoticed one time in 2^32).
fn checksum(bytes: &[u8]) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = K ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) as u32
}

/// Ends the record that starts at `start` in `out` with its checksum.
fn seal(out: &mut Vec<u8>, start: usize) {
    let sum = checksum(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Whether `value` is a record of this module (else JSON).
pub fn is_record(value: &[u8]) -> bool {
    value.first() == Some(&FORMAT)
}

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_option(out: &mut Vec<u8>, n: Option<u32>) {
    put_uint(out, n.map_or(0, |n| u64::from(n) + 1));
}

/// Appends the record of `service` to `out`.
pub fn put_service(out: &mut Vec<u8>, service: &Service) {
    let Service {
        name,
        cluster_ip,
        ports,
        session_affinity,
        affinity_timeout_secs,
        external_ips,
        external_traffic_policy,
        internal_traffic_policy,
        source,
    } = service;
    let start = out.len();
    out.push(FORMAT);
    put_str(out, name);
    out.extend_from_slice(&cluster_ip.octets());
    put_uint(out, ports.len() as u64);
    for port in ports {
        let ServicePort {
            name,
            protocol,
            port,
            target_port,
            node_port,
        } = port;
        put_str(out, name);
        put_str(out, protocol);
        put_uint(out, u64::from(*port));
        put_option(out, *target_port);
        put_option(out, *node_port);
    }
    put_str(out, session_affinity);
    put_uint(out, u64::from(*affinity_timeout_secs));
    put_uint(out, external_ips.len() as u64);
    for ip in external_ips {
        out.extend_from_slice(&ip.octets());
    }
    put_str(out, external_traffic_policy);
    put_str(out, internal_traffic_policy);
    out.push(match source {
        Source::Api => 0,
        Source::Kubernetes => 1,
    });
    seal(out, start);
}

/// Appends the record of an endpoint list to `out`.
pub fn put_endpoints(out: &mut Vec<u8>, endpoints: &[Endpoint]) {
    let start = out.len();
    out.push(FORMAT);
    put_uint(out, endpoints.len() as u64);
    for endpoint in endpoints {
        let Endpoint {
            address,
            ready,
            terminating,
            node,
            serving,
            ports,
        } = endpoint;
        out.extend_from_slice(&address.octets());
        let flags = [
            (*ready, READY),
            (*terminating, TERMINATING),
            (serving.is_some(), SERVING_GIVEN),
            (*serving == Some(true), SERVING),
        ];
        out.push(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |f, (_, b)| f | b),
        );
        put_str(out, node);
        put_uint(out, ports.len() as u64);
        for (name, port) in ports.iter() {
            put_str(out, name);
            put_uint(out, u64::from(*port));
        }
    }
    seal(out, start);
}

/// Reads a record front to back; every read says what it reads, for the
/// error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader of the fields of `record`, past its format byte, once its
    /// checksum is found right.
    fn new(record: &'a [u8]) -> Result<Reader<'a>, String> {
        match record.first() {
            Some(&FORMAT) => {}
            Some(other) => return Err(format!("unknown record format (first byte {other:#04x})")),
            None => return Err("the record is empty".to_string()),
        }
        let Some(body_len) = record.len().checked_sub(CHECKSUM_LEN).filter(|&n| n > 0) else {
            return Err(format!("the record is too short ({} bytes)", record.len()));
        };
        let (bytes, sum) = record.split_at(body_len);
        if u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) != checksum(bytes) {
            return Err(format!(
                "its checksum is wrong ({} bytes): the record is damaged",
                record.len()
            ));
        }
        Ok(Reader { bytes, at: 1 })
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the record ends inside the {what} (byte {} of {})",
                self.at,
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn uint(&mut self, what: &str) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("the {what} at byte {} is too long", self.at))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let at = self.at;
        let n = self.uint(what)?;
        u32::try_from(n).map_err(|_| format!("the {what} at byte {at} is {n}, over 2^32"))
    }

    fn option(&mut self, what: &str) -> Result<Option<u32>, String> {
        let at = self.at;
        match self.uint(what)? {
            0 => Ok(None),
            n => u32::try_from(n - 1)
                .map(Some)
                .map_err(|_| format!("the {what} at byte {at} is {}, over 2^32", n - 1)),
        }
    }

    /// A count of items of at least `min_len` bytes each, checked against
    /// the bytes left (so a damaged count allocates nothing large).
    fn count(&mut self, what: &str, min_len: usize) -> Result<usize, String> {
        let at = self.at;
        let n = self.uint(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_len as u64) > left {
            return Err(format!(
                "the {what} at byte {at} is {n}, more than the {left} bytes left hold"
            ));
        }
        Ok(n as usize)
    }

    fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let len = self.count(what, 1)?;
        let at = self.at;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| format!("the {what} at byte {at} is not UTF-8"))
    }

    fn compact(&mut self, what: &str) -> Result<CompactString, String> {
        self.str(what).map(CompactString::from)
    }

    fn addr(&mut self, what: &str) -> Result<Ipv4Addr, String> {
        let b = self.take(4, what)?;
        Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }

    fn end(&self) -> Result<(), String> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(format!(
                "bytes left over after the record's end (byte {}): {n}",
                self.at
            )),
        }
    }
}

/// The service in a record written by [`put_service`].
pub fn service(bytes: &[u8]) -> Result<Service, String> {
    let mut r = Reader::new(bytes)?;
    let name = r.compact("service name")?;
    let cluster_ip = r.addr("cluster IP")?;
    let count = r.count("port count", 5)?;
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        ports.push(ServicePort {
            name: r.compact("port name")?,
            protocol: r.compact("protocol")?,
            port: r.u32("port")?,
            target_port: r.option("target port")?,
            node_port: r.option("node port")?,
        });
    }
    let session_affinity = r.compact("session affinity")?;
    let affinity_timeout_secs = r.u32("affinity timeout")?;
    let count = r.count("external address count", 4)?;
    let mut external_ips = Vec::with_capacity(count);
    for _ in 0..count {
        external_ips.push(r.addr("external address")?);
    }
    let external_traffic_policy = r.compact("external traffic policy")?;
    let internal_traffic_policy = r.compact("internal traffic policy")?;
    let at = r.at;
    let source = match r.byte("source")? {
        0 => Source::Api,
        1 => Source::Kubernetes,
        other => return Err(format!("the source at byte {at} is {other}, not 0 or 1")),
    };
    r.end()?;
    Ok(Service {
        name,
        cluster_ip,
        ports,
        session_affinity,
        affinity_timeout_secs,
        external_ips,
        external_traffic_policy,
        internal_traffic_policy,
        source,
    })
}

/// The endpoint list in a record written by [`put_endpoints`].
pub fn endpoints(bytes: &[u8]) -> Result<Vec<Endpoint>, String> {
    let mut r = Reader::new(bytes)?;
    // An endpoint takes at least 7 bytes: address, flags, two counts.
    let count = r.count("endpoint count", 7)?;
    let mut list = Vec::with_capacity(count);
    for _ in 0..count {
        let address = r.addr("endpoint address")?;
        let at = r.at;
        let flags = r.byte("endpoint flags")?;
        if flags & !(READY | TERMINATING | SERVING_GIVEN | SERVING) != 0 {
            return Err(format!("the endpoint flags at byte {at} are {flags:#04x}"));
        }
        let node = NodeName::new(r.str("node name")?);
        let pairs = r.count("port map count", 2)?;
        let ports: PortMap = if pairs == 0 {
            PortMap::default()
        } else {
            let mut named = Vec::with_capacity(pairs);
            for _ in 0..pairs {
                named.push((r.compact("port map name")?, r.u32("port map port")?));
            }
            named.into_iter().collect()
        };
        list.push(Endpoint {
            address,
            ready: flags & READY != 0,
            terminating: flags & TERMINATING != 0,
            node,
            serving: (flags & SERVING_GIVEN != 0).then_some(flags & SERVING != 0),
            ports,
        });
    }
    r.end()?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            name: "kube-system/dns".into(),
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            ports: vec![
                ServicePort {
                    name: "dns".into(),
                    protocol: "UDP".into(),
                    port: 53,
                    target_port: Some(5353),
                    node_port: None,
                },
                ServicePort {
                    name: "metrics".into(),
                    protocol: "TCP".into(),
                    port: 9153,
                    target_port: None,
                    node_port: Some(u32::MAX),
                },
            ],
            session_affinity: "ClientIP".into(),
            affinity_timeout_secs: 300,
            external_ips: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
            external_traffic_policy: "Local".into(),
            internal_traffic_policy: "Cluster".into(),
            source: Source::Kubernetes,
        }
    }

    fn endpoints_list() -> Vec<Endpoint> {
        let endpoint = |i: u8, serving: Option<bool>, ports: PortMap| Endpoint {
            address: Ipv4Addr::new(10, 244, 1, i),
            ready: i.is_multiple_of(2),
            terminating: i.is_multiple_of(3),
            node: NodeName::new(if i == 1 { "" } else { "node-é" }),
            serving,
            ports,
        };
        vec![
            endpoint(1, None, PortMap::default()),
            endpoint(
                2,
                Some(true),
                [("dns", 5353), ("", 80)].into_iter().collect(),
            ),
            endpoint(3, Some(false), [("metrics", 9153)].into_iter().collect()),
        ]
    }

    fn encoded_service() -> Vec<u8> {
        let mut out = Vec::new();
        put_service(&mut out, &service());
        out
    }

    #[test]
    fn records_read_back_equal() {
        assert_eq!(super::service(&encoded_service()).unwrap(), service());
        let mut out = Vec::new();
        put_endpoints(&mut out, &endpoints_list());
        assert!(is_record(&out));
        assert_eq!(endpoints(&out).unwrap(), endpoints_list());
        out.clear();
        put_endpoints(&mut out, &[]);
        assert_eq!(out[..2], [FORMAT, 0]);
        assert_eq!(out.len(), 2 + CHECKSUM_LEN);
        assert_eq!(endpoints(&out).unwrap(), Vec::new());
    }

    #[test]
    fn lists_are_read_at_their_exact_length() {
        let back = super::service(&encoded_service()).unwrap();
        assert_eq!(back.ports.capacity(), 2);
        assert_eq!(back.external_ips.capacity(), 2);
        let mut out = Vec::new();
        put_endpoints(&mut out, &endpoints_list());
        assert_eq!(endpoints(&out).unwrap().capacity(), 3);
    }

    #[test]
    fn the_service_record_is_byte_exact() {
        // The layout is the stored format: a change to it needs a new FORMAT.
        let mut expected = vec![FORMAT, 15];
        expected.extend_from_slice(b"kube-system/dns");
        expected.extend_from_slice(&[10, 96, 0, 10, 2]);
        expected.extend_from_slice(b"\x03dns\x03UDP\x35\xea\x29\x00");
        expected.extend_from_slice(b"\x07metrics\x03TCP\xc1\x47\x00\x80\x80\x80\x80\x10");
        expected.extend_from_slice(b"\x08ClientIP\xac\x02\x02\xc0\x00\x02\x01\xc0\x00\x02\x02");
        expected.extend_from_slice(b"\x05Local\x07Cluster\x01");
        let sum = checksum(&expected);
        expected.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(encoded_service(), expected);
        // The checksum itself is fixed too (it is stored).
        assert_eq!(checksum(b""), 0x7b1d_cdaf);
        assert_eq!(checksum(b"podswitch"), 0x3eaa_fd9d);
    }

    /// `body` (a record without its checksum) with its checksum.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut record = body.to_vec();
        seal(&mut record, 0);
        record
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_found() {
        let mut list = Vec::new();
        put_endpoints(&mut list, &endpoints_list());
        let service_record = encoded_service();
        for len in 0..service_record.len() {
            assert!(
                super::service(&service_record[..len]).is_err(),
                "cut at {len}"
            );
        }
        for len in 0..list.len() {
            assert!(endpoints(&list[..len]).is_err(), "cut at {len}");
        }
        for record in [service_record, list] {
            for at in 0..record.len() {
                for bit in 0..8 {
                    let mut bad = record.clone();
                    bad[at] ^= 1 << bit;
                    assert!(super::service(&bad).is_err(), "bit {bit} of byte {at}");
                    assert!(endpoints(&bad).is_err(), "bit {bit} of byte {at}");
                }
            }
        }
    }

    #[test]
    fn wrong_fields_under_a_right_checksum_are_errors_never_panics() {
        let mut list = Vec::new();
        put_endpoints(&mut list, &endpoints_list());
        for record in [encoded_service(), list] {
            let body = &record[..record.len() - CHECKSUM_LEN];
            for len in 1..body.len() {
                let cut = sealed(&body[..len]);
                assert!(super::service(&cut).is_err() || endpoints(&cut).is_err());
            }
            for at in 1..body.len() {
                for bit in 0..8 {
                    let mut bad = body.to_vec();
                    bad[at] ^= 1 << bit;
                    let _ = (super::service(&sealed(&bad)), endpoints(&sealed(&bad)));
                }
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong_where() {
        let record = encoded_service();
        let body = &record[..record.len() - CHECKSUM_LEN];
        let cut = super::service(&sealed(&body[..20])).unwrap_err();
        assert_eq!(cut, "the record ends inside the cluster IP (byte 17 of 20)");
        let mut long = body.to_vec();
        long.push(0);
        assert_eq!(
            super::service(&sealed(&long)).unwrap_err(),
            "bytes left over after the record's end (byte 89): 1"
        );
        assert_eq!(
            endpoints(&sealed(&[FORMAT, 0xff, 0xff, 0x03])).unwrap_err(),
            "the endpoint count at byte 1 is 65535, more than the 0 bytes left hold"
        );
        assert_eq!(
            endpoints(b"[]").unwrap_err(),
            "unknown record format (first byte 0x5b)"
        );
        let mut bad_source = body.to_vec();
        *bad_source.last_mut().unwrap() = 7;
        assert_eq!(
            super::service(&sealed(&bad_source)).unwrap_err(),
            "the source at byte 88 is 7, not 0 or 1"
        );
        let mut noise = record.clone();
        noise[30] ^= 0x10;
        assert_eq!(
            super::service(&noise).unwrap_err(),
            "its checksum is wrong (93 bytes): the record is damaged"
        );
        assert_eq!(
            endpoints(&[FORMAT, 0, 0]).unwrap_err(),
            "the record is too short (3 bytes)"
        );
    }
}
