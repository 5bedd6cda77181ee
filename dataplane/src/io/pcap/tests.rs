//! Reader tests: hand-made byte fixtures, every truncation point, hostile fields, proptest.

use std::io::{self, Read};

use proptest::prelude::*;

use super::pcapng::Resolution;
use super::*;

/// Classic pcap, little-endian, microseconds, snaplen 65535, Ethernet; two records.
#[rustfmt::skip]
static CLASSIC_LE_MICROS: [u8; 62] = [
    0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, // magic, version 2.4
    0, 0, 0, 0, 0, 0, 0, 0,                         // thiszone, sigfigs
    0xff, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // snaplen 65535, Ethernet
    // record at 24: 1 s + 2 us, caplen 4, orig_len 4
    0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
    0xde, 0xad, 0xbe, 0xef,
    // record at 44: 3 s + 999999 us, caplen 2, orig_len 60
    0x03, 0x00, 0x00, 0x00, 0x3f, 0x42, 0x0f, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00,
    0x01, 0x02,
];
/// Cut points that leave a readable file, each with the number of records it then has.
type Ends = &'static [(usize, usize)];

const CLASSIC_LE_MICROS_ENDS: Ends = &[(24, 0), (44, 1), (62, 2)];

/// Classic pcap, big-endian, nanoseconds; link-type field 0x30000001 (Ethernet plus FCS bits).
#[rustfmt::skip]
static CLASSIC_BE_NANOS: [u8; 43] = [
    0xa1, 0xb2, 0x3c, 0x4d, 0x00, 0x02, 0x00, 0x04,
    0, 0, 0, 0, 0, 0, 0, 0,
    0x00, 0x00, 0x00, 0x40, 0x30, 0x00, 0x00, 0x01, // snaplen 64, link-type field
    // record at 24: 5 s + 7 ns, caplen 3, orig_len 3
    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03,
    0xaa, 0xbb, 0xcc,
];
const CLASSIC_BE_NANOS_ENDS: Ends = &[(24, 0), (43, 1)];

/// pcapng, little-endian: SHB, IDB 0 (Ethernet, default us), IDB 1 (raw IP, if_tsresol 9),
/// a Name Resolution Block to skip, EPB on each interface, an SPB.
#[rustfmt::skip]
static PCAPNG_LE: [u8; 188] = [
    // SHB at 0, length 28
    0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00, 0x4d, 0x3c, 0x2b, 0x1a, 0x01, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1c, 0x00, 0x00, 0x00,
    // IDB 0 at 28, length 20: Ethernet, snaplen 262144
    0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
    0x14, 0x00, 0x00, 0x00,
    // IDB 1 at 48, length 32: raw IP (101), snaplen 0, if_tsresol = 9, opt_endofopt
    0x01, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x65, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x09, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,
    // NRB at 80, length 16: just nrb_record_end
    0x04, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
    // EPB at 96, length 36: interface 0, 1_500_000 us, caplen 4, orig_len 4
    0x06, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x60, 0xe3, 0x16, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    0x24, 0x00, 0x00, 0x00,
    // EPB at 132, length 36: interface 1, 1_000_000_007 ns, caplen 3 (+1 padding), orig_len 3
    0x06, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x07, 0xca, 0x9a, 0x3b, 0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x00,
    0x24, 0x00, 0x00, 0x00,
    // SPB at 168, length 20: orig_len 2, data padded to 4
    0x03, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00,
];
const PCAPNG_LE_ENDS: Ends = &[
    (28, 0),
    (48, 0),
    (80, 0),
    (96, 0),
    (132, 1),
    (168, 2),
    (188, 3),
];

/// pcapng, big-endian: SHB, IDB with binary if_tsresol 2^-10, one EPB.
#[rustfmt::skip]
static PCAPNG_BE: [u8; 96] = [
    // SHB at 0
    0x0a, 0x0d, 0x0d, 0x0a, 0x00, 0x00, 0x00, 0x1c, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x01, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x1c,
    // IDB at 28, length 32: Ethernet, if_tsresol 0x8a
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x09, 0x00, 0x01, 0x8a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
    // EPB at 60, length 36: 3072 units of 1/1024 s, caplen 4, orig_len 64
    0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x40, 0xaa, 0xbb, 0xcc, 0xdd,
    0x00, 0x00, 0x00, 0x24,
];
const PCAPNG_BE_ENDS: Ends = &[(28, 0), (60, 0), (96, 1)];

/// An owned copy of a record, for comparing whole files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    timestamp_ns: u64,
    data: Vec<u8>,
    orig_len: u32,
    interface: u32,
    linktype: u32,
}

fn owned(r: PcapRecord<'_>) -> Owned {
    Owned {
        timestamp_ns: r.timestamp_ns,
        data: r.data.to_vec(),
        orig_len: r.orig_len,
        interface: r.interface,
        linktype: r.linktype,
    }
}

/// Reads every record of `reader`, or the first error (opening included).
fn read_from(reader: impl Read) -> Result<Vec<Owned>, PcapError> {
    let mut reader = PcapReader::new(reader)?;
    let mut out = Vec::new();
    while let Some(record) = reader.next_record()? {
        out.push(owned(record));
    }
    Ok(out)
}

fn read_all(bytes: &[u8]) -> Result<Vec<Owned>, PcapError> {
    read_from(bytes)
}

fn rec(timestamp_ns: u64, data: &[u8], orig_len: u32, interface: u32, linktype: u32) -> Owned {
    Owned {
        timestamp_ns,
        data: data.to_vec(),
        orig_len,
        interface,
        linktype,
    }
}

#[test]
fn classic_little_endian_micros() {
    let mut reader = PcapReader::new(&CLASSIC_LE_MICROS[..]).unwrap();
    assert_eq!(reader.format(), CaptureFormat::Pcap { nanosecond: false });
    let first = reader.next_record().unwrap().unwrap();
    assert!(first.is_ethernet());
    assert!(!first.is_truncated());
    assert_eq!(
        owned(first),
        rec(1_000_002_000, &[0xde, 0xad, 0xbe, 0xef], 4, 0, 1)
    );
    let second = reader.next_record().unwrap().unwrap();
    assert!(second.is_truncated());
    assert_eq!(owned(second), rec(3_999_999_000, &[1, 2], 60, 0, 1));
    assert!(reader.next_record().unwrap().is_none());
    assert_eq!(reader.offset(), 62);
}

#[test]
fn classic_big_endian_nanos_masks_fcs_bits() {
    let mut reader = PcapReader::new(&CLASSIC_BE_NANOS[..]).unwrap();
    assert_eq!(reader.format(), CaptureFormat::Pcap { nanosecond: true });
    let record = owned(reader.next_record().unwrap().unwrap());
    assert_eq!(
        record,
        rec(5_000_000_007, &[0xaa, 0xbb, 0xcc], 3, 0, LINKTYPE_ETHERNET)
    );
}

#[test]
fn pcapng_little_endian_interfaces_and_blocks() {
    let mut reader = PcapReader::new(&PCAPNG_LE[..]).unwrap();
    assert_eq!(reader.format(), CaptureFormat::Pcapng);
    let records = read_all(&PCAPNG_LE).unwrap();
    assert_eq!(
        records,
        [
            rec(1_500_000_000, &[0xde, 0xad, 0xbe, 0xef], 4, 0, 1),
            rec(1_000_000_007, &[0x45, 0, 0], 3, 1, 101),
            rec(0, &[1, 2], 2, 0, 1),
        ]
    );
    assert!(reader.next_record().unwrap().unwrap().is_ethernet());
    assert!(
        !reader.next_record().unwrap().unwrap().is_ethernet(),
        "interface 1 is raw IP"
    );
}

#[test]
fn pcapng_big_endian_binary_resolution() {
    assert_eq!(
        read_all(&PCAPNG_BE).unwrap(),
        [rec(3_000_000_000, &[0xaa, 0xbb, 0xcc, 0xdd], 64, 0, 1)]
    );
}

/// Cutting a fixture anywhere gives an error, except at the ends of whole records and blocks.
#[test]
fn every_truncation_is_an_error() {
    let fixtures: [(&[u8], Ends); 4] = [
        (&CLASSIC_LE_MICROS, CLASSIC_LE_MICROS_ENDS),
        (&CLASSIC_BE_NANOS, CLASSIC_BE_NANOS_ENDS),
        (&PCAPNG_LE, PCAPNG_LE_ENDS),
        (&PCAPNG_BE, PCAPNG_BE_ENDS),
    ];
    for (bytes, ends) in fixtures {
        let full = read_all(bytes).unwrap();
        for cut in 0..=bytes.len() {
            let result = read_all(&bytes[..cut]);
            match ends.iter().find(|(end, _)| *end == cut) {
                Some(&(_, count)) => assert_eq!(result.unwrap(), full[..count], "cut at {cut}"),
                None => assert!(
                    matches!(result, Err(PcapError::Truncated { .. })),
                    "cut at {cut} of {}: {result:?}",
                    bytes.len()
                ),
            }
        }
    }
}

#[test]
fn truncation_message_names_part_and_offset() {
    let err = read_all(&CLASSIC_LE_MICROS[..61]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record truncated at byte offset 44: needs 18 bytes, the file has 17"
    );
    let err = read_all(&PCAPNG_LE[..100]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "block truncated at byte offset 96: needs 8 bytes, the file has 4"
    );
    let err = read_all(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "magic number truncated at byte offset 0: needs 4 bytes, the file has 0"
    );
}

#[test]
fn bad_magic() {
    let err = read_all(b"GIF89a, not a capture").unwrap_err();
    assert!(matches!(err, PcapError::BadMagic { magic: 0x4749_4638 }));
    assert_eq!(
        err.to_string(),
        "bad magic number 0x47494638: not a pcap or pcapng file"
    );
}

#[test]
fn bad_file_headers() {
    let mut version_1_4 = CLASSIC_LE_MICROS;
    version_1_4[4] = 1;
    let err = read_all(&version_1_4).unwrap_err();
    assert_eq!(err.to_string(), "unsupported pcap version 1.4");

    let mut reserved = CLASSIC_LE_MICROS;
    reserved[22] = 0x30; // bits 16..26 of the link-type field
    let err = read_all(&reserved).unwrap_err();
    assert_eq!(
        err.to_string(),
        "link-type field 0x00300001 has non-zero reserved bits"
    );

    let mut pcapng_v2 = PCAPNG_LE;
    pcapng_v2[12] = 2;
    assert!(matches!(
        read_all(&pcapng_v2),
        Err(PcapError::UnsupportedVersion {
            format: "pcapng",
            major: 2,
            ..
        })
    ));

    let mut bad_order = PCAPNG_LE;
    bad_order[8] = 0;
    assert!(matches!(
        read_all(&bad_order),
        Err(PcapError::BadByteOrderMagic { offset: 0, .. })
    ));
}

#[test]
fn caplen_over_the_limit_is_refused_before_reading() {
    let mut huge = CLASSIC_LE_MICROS;
    huge[32..36].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let err = read_all(&huge).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record at byte offset 24: caplen 2147483647 exceeds the limit of 262144 bytes"
    );

    // Exactly the limit is fine (given the bytes).
    let mut big = CLASSIC_LE_MICROS[..24].to_vec();
    big.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    big.extend_from_slice(&MAX_CAPLEN.to_le_bytes());
    big.extend_from_slice(&MAX_CAPLEN.to_le_bytes());
    big.resize(big.len() + MAX_CAPLEN as usize, 0x5a);
    assert_eq!(read_all(&big).unwrap()[0].data.len(), MAX_CAPLEN as usize);
}

/// Replaces the little-endian u32 at `at` in a copy of PCAPNG_LE.
fn pcapng_with(at: usize, value: u32) -> Vec<u8> {
    let mut bytes = PCAPNG_LE.to_vec();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn pcapng_framing_errors() {
    let err = read_all(&pcapng_with(100, 34)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "block at byte offset 96: length 34 is not a multiple of 4"
    );

    let err = read_all(&pcapng_with(100, 28)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "enhanced packet block at byte offset 96: length 28 is below the minimum of 32"
    );

    let err = read_all(&pcapng_with(100, 0x1000_0000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "enhanced packet block at byte offset 96: length 268435456 exceeds the limit of 327680 bytes"
    );

    let err = read_all(&pcapng_with(128, 40)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "block at byte offset 96: trailing length 40 differs from leading length 36"
    );

    // A skipped block is checked too, without being buffered.
    let err = read_all(&pcapng_with(92, 12)).unwrap_err();
    assert!(matches!(
        err,
        PcapError::BlockLengthMismatch {
            offset: 80,
            length: 16,
            trailer: 12
        }
    ));
    let err = read_all(&pcapng_with(84, 0xffff_fff0)).unwrap_err();
    assert!(
        matches!(
            err,
            PcapError::Truncated {
                what: "block",
                offset: 80,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn pcapng_packet_errors() {
    let err = read_all(&pcapng_with(116, 5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "packet block at byte offset 96: caplen 5 runs past its 4 data bytes"
    );

    let err = read_all(&pcapng_with(116, MAX_CAPLEN + 1)).unwrap_err();
    assert!(matches!(
        err,
        PcapError::CaplenTooLarge {
            offset: 96,
            caplen: 262_145,
            ..
        }
    ));

    let err = read_all(&pcapng_with(104, 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "packet block at byte offset 96 names interface 2, but the section describes 2"
    );
}

#[test]
fn pcapng_option_errors() {
    // if_tsresol claiming 200 bytes in a 32-byte IDB.
    let err = read_all(&pcapng_with(64, 0x00c8_0009)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "block at byte offset 48: option 9 with length 200 runs past the end of the block"
    );

    // Decimal resolution 10^-100 cannot be scaled.
    let mut bytes = PCAPNG_LE;
    bytes[68] = 100;
    let err = read_all(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface description at byte offset 48: if_tsresol 0x64 is not supported"
    );
}

#[test]
fn new_section_switches_byte_order_and_forgets_interfaces() {
    // LE section with packets, then the BE file as a second section.
    let mut two_sections = PCAPNG_LE.to_vec();
    two_sections.extend_from_slice(&PCAPNG_BE);
    let records = read_all(&two_sections).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(
        records[3],
        rec(3_000_000_000, &[0xaa, 0xbb, 0xcc, 0xdd], 64, 0, 1)
    );

    // A second section without IDBs: its EPB names an interface that no longer exists.
    let mut orphan = PCAPNG_LE[..96].to_vec();
    orphan.extend_from_slice(&PCAPNG_LE[..28]);
    orphan.extend_from_slice(&PCAPNG_LE[96..132]);
    let err = read_all(&orphan).unwrap_err();
    assert!(matches!(
        err,
        PcapError::UnknownInterface {
            offset: 124,
            interface: 0,
            described: 0
        }
    ));
}

#[test]
fn timestamp_resolutions_and_offset() {
    let ns = |resolution: Resolution, units| {
        pcapng::Interface::for_test(resolution, 0).timestamp_ns(units)
    };
    assert_eq!(ns(Resolution::Decimal(0), 3), 3_000_000_000);
    assert_eq!(ns(Resolution::Decimal(12), 5_000), 5);
    assert_eq!(ns(Resolution::Binary(1), 3), 1_500_000_000);
    assert_eq!(
        ns(Resolution::Decimal(0), u64::MAX),
        u64::MAX,
        "clamped, not wrapped"
    );
    assert_eq!(
        pcapng::Interface::for_test(Resolution::DEFAULT, 10).timestamp_ns(1),
        10_000_001_000
    );
    assert_eq!(
        pcapng::Interface::for_test(Resolution::DEFAULT, -10).timestamp_ns(1),
        0,
        "clamped at 0"
    );
}

#[test]
fn stops_after_the_first_error() {
    let mut bytes = CLASSIC_LE_MICROS.to_vec();
    bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&CLASSIC_LE_MICROS[24..]);
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    assert!(reader.next_record().is_err());
    assert!(reader.next_record().unwrap().is_none());
    assert!(reader.next_record().unwrap().is_none());
}

/// Hands out one byte per call and an `Interrupted` before each.
struct Trickle<'a> {
    bytes: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        match (self.bytes.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.bytes = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// Fails after `after` bytes.
struct Failing<'a> {
    bytes: &'a [u8],
}

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_and_interrupts_change_nothing() {
    for bytes in [&CLASSIC_LE_MICROS[..], &PCAPNG_LE[..], &PCAPNG_BE[..]] {
        assert_eq!(
            read_from(Trickle {
                bytes,
                interrupt: false
            })
            .unwrap(),
            read_all(bytes).unwrap()
        );
    }
}

#[test]
fn read_errors_are_chained() {
    let err = read_from(Failing {
        bytes: &CLASSIC_LE_MICROS[..30],
    })
    .unwrap_err();
    assert!(matches!(err, PcapError::Read { offset: 30, .. }), "{err:?}");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "disk on fire"
    );
}

#[test]
fn open_names_a_missing_file_as_such() {
    let err = PcapReader::open("/nonexistent/podswitch.pcap").unwrap_err();
    assert!(matches!(err, PcapError::Open(_)));
    assert_eq!(err.to_string(), "cannot open the capture file");
}

/// Reads `bytes` to the end or the first error and checks that the reader
/// then stays finished. Every record consumes at least 12 bytes, which bounds
/// the number of calls.
fn read_bounded(bytes: &[u8]) {
    let Ok(mut reader) = PcapReader::new(bytes) else {
        return;
    };
    let max_records = bytes.len() / 12 + 1;
    for _ in 0..=max_records {
        match reader.next_record() {
            Ok(Some(record)) => assert!(record.data.len() <= MAX_CAPLEN as usize),
            Ok(None) | Err(_) => {
                assert!(reader.next_record().unwrap().is_none());
                return;
            }
        }
    }
    panic!("more than {max_records} records from {} bytes", bytes.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_bounded(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_magic_never_panic(
        magic in prop::sample::select(vec![&CLASSIC_LE_MICROS[..24], &CLASSIC_BE_NANOS[..24], &PCAPNG_LE[..28], &PCAPNG_BE[..28]]),
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&tail);
        read_bounded(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        fixture in prop::sample::select(vec![&CLASSIC_LE_MICROS[..], &CLASSIC_BE_NANOS[..], &PCAPNG_LE[..], &PCAPNG_BE[..]]),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = fixture.to_vec();
        for (at, value) in mutations {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        read_bounded(&bytes);
        read_bounded(&bytes[..cut.index(bytes.len() + 1)]);
    }
}
