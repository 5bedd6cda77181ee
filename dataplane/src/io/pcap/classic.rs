//! Classic libpcap format: a 24-byte file header, then 16-byte record headers each followed by caplen bytes.

use std::io::Read;

use super::{ByteOrder, Filled, Input, MAX_CAPLEN, PcapError, RecordMeta};

/// Microsecond magic as read big-endian from the first four bytes.
pub(super) const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Nanosecond magic as read big-endian from the first four bytes.
pub(super) const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// File header length.
pub(super) const HEADER_LEN: usize = 24;
/// Record header length.
pub(super) const RECORD_HEADER_LEN: usize = 16;
/// The link type proper: the low 16 bits of the link-type field.
const LINKTYPE_MASK: u32 = 0x0000_ffff;
/// Bits libpcap requires to be zero (LT_RESERVED1); bits 26..32 carry the FCS length.
const LINKTYPE_RESERVED: u32 = 0x03ff_0000;

mod field {
    pub const VERSION_MAJOR: usize = 4;
    pub const VERSION_MINOR: usize = 6;
    pub const LINKTYPE: usize = 20;

    pub const TS_SEC: usize = 0;
    pub const TS_FRAC: usize = 4;
    pub const CAPLEN: usize = 8;
    pub const ORIG_LEN: usize = 12;
}

/// What the file header says about every record (its snaplen is advisory and not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) order: ByteOrder,
    pub(super) nanosecond: bool,
    pub(super) linktype: u32,
}

impl Header {
    /// Reads and checks the rest of the file header after its first four bytes, `magic`.
    pub(super) fn read<R: Read>(input: &mut Input<R>, magic: [u8; 4]) -> Result<Header, PcapError> {
        let (order, nanosecond) = match u32::from_be_bytes(magic) {
            MAGIC_MICROS => (ByteOrder::Big, false),
            MAGIC_NANOS => (ByteOrder::Big, true),
            m if m.swap_bytes() == MAGIC_MICROS => (ByteOrder::Little, false),
            m if m.swap_bytes() == MAGIC_NANOS => (ByteOrder::Little, true),
            magic => return Err(PcapError::BadMagic { magic }),
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(&magic);
        input.fill_exact(&mut bytes[4..], "pcap file header", 0)?;

        let major = order.u16(&bytes, field::VERSION_MAJOR);
        let minor = order.u16(&bytes, field::VERSION_MINOR);
        // 2.4 is current; 2.3 differs only in how old writers filled the length fields.
        if major != 2 || !(3..=4).contains(&minor) {
            return Err(PcapError::UnsupportedVersion {
                format: "pcap",
                major,
                minor,
            });
        }
        let linktype_field = order.u32(&bytes, field::LINKTYPE);
        if linktype_field & LINKTYPE_RESERVED != 0 {
            return Err(PcapError::LinkTypeReservedBits {
                field: linktype_field,
            });
        }
        Ok(Header {
            order,
            nanosecond,
            linktype: linktype_field & LINKTYPE_MASK,
        })
    }

    /// Reads the next record into `buf`; `Ok(None)` at a clean end of file.
    pub(super) fn next_record<R: Read>(
        &self,
        input: &mut Input<R>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordMeta>, PcapError> {
        let start = input.offset;
        let mut head = [0u8; RECORD_HEADER_LEN];
        if input.fill(&mut head, "record", start)? == Filled::AtEnd {
            return Ok(None);
        }
        let caplen = self.order.u32(&head, field::CAPLEN);
        if caplen > MAX_CAPLEN {
            return Err(PcapError::CaplenTooLarge {
                offset: start,
                caplen,
                limit: MAX_CAPLEN,
            });
        }
        buf.resize(caplen as usize, 0);
        input.fill_exact(buf, "record", start)?;

        let seconds = u64::from(self.order.u32(&head, field::TS_SEC));
        let fraction = u64::from(self.order.u32(&head, field::TS_FRAC));
        let fraction_ns = if self.nanosecond {
            fraction
        } else {
            fraction * 1_000
        };
        Ok(Some(RecordMeta {
            // u32::MAX * 1e9 + u32::MAX * 1e3 < u64::MAX: no overflow possible.
            timestamp_ns: seconds * 1_000_000_000 + fraction_ns,
            data: 0..buf.len(),
            orig_len: self.order.u32(&head, field::ORIG_LEN),
            interface: 0,
            linktype: self.linktype,
        }))
    }
}
