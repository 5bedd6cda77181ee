//! Writes classic pcap: little-endian, nanosecond magic, link type Ethernet, snaplen 262144.

use std::io::Write;

use super::classic::{HEADER_LEN, MAGIC_NANOS, RECORD_HEADER_LEN};
use super::{LINKTYPE_ETHERNET, MAX_CAPLEN, PcapError, PcapRecord};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Writes Ethernet frames as a nanosecond classic pcap file.
///
/// The header and every record are written in little-endian with fixed field
/// values, so the same frames and timestamps always produce the same bytes.
/// The writer does not buffer; wrap a file in a `BufWriter`.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// The snaplen written in the file header; longer frames are refused.
    pub const SNAPLEN: u32 = MAX_CAPLEN;

    /// Writes the file header to `out`.
    pub fn new(mut out: W) -> Result<Self, PcapError> {
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // 8..16: thiszone and sigfigs, both zero.
        header[16..20].copy_from_slice(&Self::SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header).map_err(PcapError::Write)?;
        Ok(PcapWriter { out })
    }

    /// Writes one complete frame captured at `timestamp_ns` (orig_len = frame length).
    pub fn write_frame(&mut self, timestamp_ns: u64, frame: &[u8]) -> Result<(), PcapError> {
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.write(timestamp_ns, frame, orig_len)
    }

    /// Writes a record read from another file, keeping its timestamp and orig_len.
    ///
    /// An orig_len below the caplen (seen in fuzzed files) is written as the caplen.
    pub fn write_record(&mut self, record: &PcapRecord<'_>) -> Result<(), PcapError> {
        if !record.is_ethernet() {
            return Err(PcapError::WrongLinkType {
                linktype: record.linktype,
            });
        }
        self.write(record.timestamp_ns, record.data, record.orig_len)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.out.flush().map_err(PcapError::Write)
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn write(&mut self, timestamp_ns: u64, data: &[u8], orig_len: u32) -> Result<(), PcapError> {
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&len| len <= Self::SNAPLEN)
            .ok_or(PcapError::FrameTooLong {
                len: data.len(),
                limit: Self::SNAPLEN,
            })?;
        let seconds = u32::try_from(timestamp_ns / NANOS_PER_SECOND)
            .map_err(|_| PcapError::TimestampOutOfRange { timestamp_ns })?;
        let nanos = (timestamp_ns % NANOS_PER_SECOND) as u32;

        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0..4].copy_from_slice(&seconds.to_le_bytes());
        head[4..8].copy_from_slice(&nanos.to_le_bytes());
        head[8..12].copy_from_slice(&caplen.to_le_bytes());
        head[12..16].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.out.write_all(&head).map_err(PcapError::Write)?;
        self.out.write_all(data).map_err(PcapError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::PcapReader;
    use crate::wire::testdata::ICMP_ECHO_FRAME;

    /// The exact bytes for one 42-byte frame at 1.000000002 s.
    #[test]
    fn header_and_record_bytes() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        writer.write_frame(1_000_000_002, &ICMP_ECHO_FRAME).unwrap();
        let bytes = writer.into_inner();
        #[rustfmt::skip]
        let expected_head: [u8; 40] = [
            0x4d, 0x3c, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, // magic (ns, LE), version 2.4
            0, 0, 0, 0, 0, 0, 0, 0,                         // thiszone, sigfigs
            0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, // snaplen 262144, Ethernet
            0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // 1 s, 2 ns
            0x2a, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, // caplen 42, orig_len 42
        ];
        assert_eq!(bytes[..40], expected_head);
        assert_eq!(bytes[40..], ICMP_ECHO_FRAME);
    }

    #[test]
    fn deterministic() {
        let write = || {
            let mut writer = PcapWriter::new(Vec::new()).unwrap();
            for i in 0..3u64 {
                writer
                    .write_frame(i * 1_500_000_001, &ICMP_ECHO_FRAME[..20 + i as usize])
                    .unwrap();
            }
            writer.into_inner()
        };
        assert_eq!(write(), write());
    }

    #[test]
    fn round_trip_keeps_everything() {
        let frames: Vec<(u64, Vec<u8>, u32)> = vec![
            (0, ICMP_ECHO_FRAME.to_vec(), 42),
            (
                1_700_000_000_999_999_999,
                ICMP_ECHO_FRAME[..14].to_vec(),
                1514,
            ),
            (
                u64::from(u32::MAX) * NANOS_PER_SECOND + 999_999_999,
                vec![0xab; 9000],
                9000,
            ),
            (5, Vec::new(), 0),
        ];
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        for (ts, data, orig_len) in &frames {
            let record = PcapRecord {
                timestamp_ns: *ts,
                data,
                orig_len: *orig_len,
                interface: 0,
                linktype: 1,
            };
            writer.write_record(&record).unwrap();
        }
        let bytes = writer.into_inner();

        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(
            reader.format(),
            crate::io::pcap::CaptureFormat::Pcap { nanosecond: true }
        );
        for (ts, data, orig_len) in &frames {
            let record = reader.next_record().unwrap().unwrap();
            assert_eq!(
                record,
                PcapRecord {
                    timestamp_ns: *ts,
                    data,
                    orig_len: *orig_len,
                    interface: 0,
                    linktype: 1
                }
            );
        }
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn refuses_what_pcap_cannot_hold() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        let too_long = vec![0u8; MAX_CAPLEN as usize + 1];
        assert!(matches!(
            writer.write_frame(0, &too_long),
            Err(PcapError::FrameTooLong { len: 262_145, .. })
        ));
        let too_late = (u64::from(u32::MAX) + 1) * NANOS_PER_SECOND;
        assert!(matches!(
            writer.write_frame(too_late, &[0; 14]),
            Err(PcapError::TimestampOutOfRange { .. })
        ));
        let raw_ip = PcapRecord {
            timestamp_ns: 0,
            data: &[0x45],
            orig_len: 1,
            interface: 0,
            linktype: 101,
        };
        assert!(matches!(
            writer.write_record(&raw_ip),
            Err(PcapError::WrongLinkType { linktype: 101 })
        ));
        // Nothing but the header was written.
        assert_eq!(writer.into_inner().len(), HEADER_LEN);
    }
}
