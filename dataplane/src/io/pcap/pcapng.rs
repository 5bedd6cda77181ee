//! pcapng: a sequence of blocks. A Section Header Block sets the byte order,
//! Interface Description Blocks describe interfaces, and Enhanced and Simple
//! Packet Blocks carry the packets.
//!
//! Every block is `type, total length, body, total length`. The reader checks
//! the framing of every block, buffers only the blocks it uses, and skips the
//! rest.

use std::io::Read;

use super::{
    ByteOrder, Filled, Input, MAX_BLOCK_LEN, MAX_CAPLEN, MAX_INTERFACES, PcapError, RecordMeta,
};

/// The Section Header Block type. It reads the same in both byte orders.
pub(super) const SHB_TYPE_BYTES: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const SHB_TYPE: u32 = 0x0a0d_0d0a;
const IDB_TYPE: u32 = 1;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
/// The SHB byte-order magic, as written by a big-endian writer.
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Type and total length.
const BLOCK_HEADER_LEN: usize = 8;
/// The repeated total length.
const BLOCK_TRAILER_LEN: usize = 4;

const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Offsets inside block bodies (after type and length).
mod field {
    pub const SHB_MAJOR: usize = 4;
    pub const SHB_MINOR: usize = 6;

    pub const IDB_LINKTYPE: usize = 0;
    pub const IDB_SNAPLEN: usize = 4;
    pub const IDB_OPTIONS: usize = 8;

    pub const EPB_INTERFACE: usize = 0;
    pub const EPB_TS_HIGH: usize = 4;
    pub const EPB_TS_LOW: usize = 8;
    pub const EPB_CAPLEN: usize = 12;
    pub const EPB_ORIG_LEN: usize = 16;
    pub const EPB_DATA: usize = 20;

    pub const SPB_ORIG_LEN: usize = 0;
    pub const SPB_DATA: usize = 4;
}

/// The state a pcapng file carries from block to block.
#[derive(Debug)]
pub(super) struct Section {
    order: ByteOrder,
    interfaces: Vec<Interface>,
}

/// What an Interface Description Block says about the packets that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Interface {
    linktype: u32,
    snaplen: u32,
    resolution: Resolution,
    offset_s: i64,
}

/// Timestamp units of an interface: 10^-n or 2^-n seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolution {
    Decimal(u8),
    Binary(u8),
}

impl Resolution {
    /// The resolution when an interface has no `if_tsresol` option.
    pub(super) const DEFAULT: Resolution = Resolution::Decimal(6);

    /// Decodes `if_tsresol`. `None` for a decimal exponent above 38, which u128 cannot scale.
    fn from_option(value: u8) -> Option<Resolution> {
        let exponent = value & 0x7f;
        if value & 0x80 != 0 {
            Some(Resolution::Binary(exponent))
        } else if exponent <= 38 {
            Some(Resolution::Decimal(exponent))
        } else {
            None
        }
    }

    /// `units` of this resolution in nanoseconds. u64 * 1e9 < 2^94, so nothing overflows.
    fn to_ns(self, units: u64) -> u128 {
        let scaled = u128::from(units) * 1_000_000_000;
        match self {
            Resolution::Decimal(exponent) => scaled / 10u128.pow(u32::from(exponent)),
            Resolution::Binary(exponent) => scaled >> exponent,
        }
    }
}

impl Interface {
    /// An Ethernet interface with the given timestamp settings.
    #[cfg(test)]
    pub(super) fn for_test(resolution: Resolution, offset_s: i64) -> Interface {
        Interface {
            linktype: super::LINKTYPE_ETHERNET,
            snaplen: 0,
            resolution,
            offset_s,
        }
    }

    /// A packet timestamp in nanoseconds since the epoch, clamped to `0..=u64::MAX`.
    pub(super) fn timestamp_ns(&self, units: u64) -> u64 {
        let ns = i128::try_from(self.resolution.to_ns(units)).unwrap_or(i128::MAX);
        let ns = ns.saturating_add(i128::from(self.offset_s) * 1_000_000_000);
        u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
    }
}

/// The name of a block type in error messages.
fn block_name(kind: u32) -> &'static str {
    match kind {
        SHB_TYPE => "section header block",
        IDB_TYPE => "interface description block",
        EPB_TYPE => "enhanced packet block",
        SPB_TYPE => "simple packet block",
        _ => "block",
    }
}

/// The smallest valid total length of a block type.
fn min_block_len(kind: u32) -> u32 {
    let body = match kind {
        SHB_TYPE => 16, // byte-order magic, version, section length
        IDB_TYPE => field::IDB_OPTIONS,
        EPB_TYPE => field::EPB_DATA,
        SPB_TYPE => field::SPB_DATA,
        _ => 0,
    };
    (BLOCK_HEADER_LEN + body + BLOCK_TRAILER_LEN) as u32
}

/// True for the block types the reader buffers; the others are skipped.
fn is_buffered(kind: u32) -> bool {
    matches!(kind, SHB_TYPE | IDB_TYPE | EPB_TYPE | SPB_TYPE)
}

impl Section {
    /// Reads the first Section Header Block; its four type bytes are already consumed.
    pub(super) fn open<R: Read>(
        input: &mut Input<R>,
        buf: &mut Vec<u8>,
    ) -> Result<Section, PcapError> {
        let mut section = Section {
            order: ByteOrder::Big,
            interfaces: Vec::new(),
        };
        section.read_block(input, buf, 0, SHB_TYPE_BYTES)?;
        section.start_section(buf)?;
        Ok(section)
    }

    /// Reads blocks until the next packet; `Ok(None)` at a clean end of file.
    pub(super) fn next_record<R: Read>(
        &mut self,
        input: &mut Input<R>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordMeta>, PcapError> {
        loop {
            let start = input.offset;
            let mut type_bytes = [0u8; 4];
            if input.fill(&mut type_bytes, "block", start)? == Filled::AtEnd {
                return Ok(None);
            }
            match self.read_block(input, buf, start, type_bytes)? {
                SHB_TYPE => self.start_section(buf)?,
                IDB_TYPE => self.add_interface(buf, start)?,
                EPB_TYPE => return self.enhanced_packet(buf, start).map(Some),
                SPB_TYPE => return self.simple_packet(buf, start).map(Some),
                _ => {}
            }
        }
    }

    /// Reads the rest of the block at `start` and checks its framing; returns its type.
    ///
    /// For a buffered type, `buf` then holds the body. A Section Header Block
    /// first switches the byte order to its own.
    fn read_block<R: Read>(
        &mut self,
        input: &mut Input<R>,
        buf: &mut Vec<u8>,
        start: u64,
        type_bytes: [u8; 4],
    ) -> Result<u32, PcapError> {
        let mut length_bytes = [0u8; 4];
        input.fill_exact(&mut length_bytes, "block", start)?;
        let mut magic = [0u8; 4];
        let kind = if type_bytes == SHB_TYPE_BYTES {
            input.fill_exact(&mut magic, "block", start)?;
            self.order = match u32::from_be_bytes(magic) {
                BYTE_ORDER_MAGIC => ByteOrder::Big,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => ByteOrder::Little,
                magic => {
                    return Err(PcapError::BadByteOrderMagic {
                        offset: start,
                        magic,
                    });
                }
            };
            SHB_TYPE
        } else {
            self.order.u32(&type_bytes, 0)
        };
        let length = self.order.u32(&length_bytes, 0);
        let name = block_name(kind);
        if !length.is_multiple_of(4) {
            return Err(PcapError::BlockLengthUnaligned {
                offset: start,
                length,
            });
        }
        let minimum = min_block_len(kind);
        if length < minimum {
            return Err(PcapError::BlockTooShort {
                kind: name,
                offset: start,
                length,
                minimum,
            });
        }

        let rest = length as usize - BLOCK_HEADER_LEN; // body and trailer
        let trailer = if is_buffered(kind) {
            if length > MAX_BLOCK_LEN {
                return Err(PcapError::BlockTooLong {
                    kind: name,
                    offset: start,
                    length,
                    limit: MAX_BLOCK_LEN,
                });
            }
            buf.resize(rest, 0);
            // The SHB byte-order magic was read already; it starts the body.
            let consumed = match buf.get_mut(..4) {
                Some(head) if kind == SHB_TYPE => {
                    head.copy_from_slice(&magic);
                    4
                }
                _ => 0,
            };
            input.fill_exact(buf.get_mut(consumed..).unwrap_or_default(), "block", start)?;
            let trailer = self.order.u32(buf, rest - BLOCK_TRAILER_LEN);
            buf.truncate(rest - BLOCK_TRAILER_LEN);
            trailer
        } else {
            input.skip((rest - BLOCK_TRAILER_LEN) as u64, "block", start)?;
            let mut trailer = [0u8; 4];
            input.fill_exact(&mut trailer, "block", start)?;
            self.order.u32(&trailer, 0)
        };
        if trailer != length {
            return Err(PcapError::BlockLengthMismatch {
                offset: start,
                length,
                trailer,
            });
        }
        Ok(kind)
    }

    /// A new section: check its version and forget the previous section's interfaces.
    fn start_section(&mut self, body: &[u8]) -> Result<(), PcapError> {
        let major = self.order.u16(body, field::SHB_MAJOR);
        let minor = self.order.u16(body, field::SHB_MINOR);
        if major != 1 {
            return Err(PcapError::UnsupportedVersion {
                format: "pcapng",
                major,
                minor,
            });
        }
        self.interfaces.clear();
        Ok(())
    }

    /// Records an interface with its link type, snaplen and timestamp options.
    fn add_interface(&mut self, body: &[u8], offset: u64) -> Result<(), PcapError> {
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(PcapError::TooManyInterfaces {
                offset,
                limit: MAX_INTERFACES,
            });
        }
        let mut interface = Interface {
            linktype: u32::from(self.order.u16(body, field::IDB_LINKTYPE)),
            snaplen: self.order.u32(body, field::IDB_SNAPLEN),
            resolution: Resolution::DEFAULT,
            offset_s: 0,
        };
        let mut at = field::IDB_OPTIONS;
        while at.saturating_add(4) <= body.len() {
            let code = self.order.u16(body, at);
            let length = self.order.u16(body, at + 2);
            if code == OPT_ENDOFOPT {
                break;
            }
            let value_start = at + 4;
            let value = body
                .get(value_start..value_start + usize::from(length))
                .ok_or(PcapError::OptionOverrun {
                    offset,
                    code,
                    length,
                })?;
            match (code, value) {
                (OPT_IF_TSRESOL, [tsresol, ..]) => {
                    interface.resolution =
                        Resolution::from_option(*tsresol).ok_or(PcapError::UnsupportedTsresol {
                            offset,
                            value: *tsresol,
                        })?;
                }
                (OPT_IF_TSOFFSET, [_, _, _, _, _, _, _, _]) => {
                    interface.offset_s = self.order.u64(value, 0) as i64;
                }
                _ => {}
            }
            at = value_start + usize::from(length).next_multiple_of(4);
        }
        self.interfaces.push(interface);
        Ok(())
    }

    /// The interface a packet block names, or the error that it is unknown.
    fn interface(&self, id: u32, offset: u64) -> Result<Interface, PcapError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.interfaces.get(i))
            .copied()
            .ok_or(PcapError::UnknownInterface {
                offset,
                interface: id,
                described: self.interfaces.len(),
            })
    }

    /// The packet in an Enhanced Packet Block body.
    fn enhanced_packet(&self, body: &[u8], offset: u64) -> Result<RecordMeta, PcapError> {
        let id = self.order.u32(body, field::EPB_INTERFACE);
        let interface = self.interface(id, offset)?;
        let caplen = self.order.u32(body, field::EPB_CAPLEN);
        if caplen > MAX_CAPLEN {
            return Err(PcapError::CaplenTooLarge {
                offset,
                caplen,
                limit: MAX_CAPLEN,
            });
        }
        let available = body.len().saturating_sub(field::EPB_DATA);
        if caplen as usize > available {
            return Err(PcapError::CaplenExceedsBlock {
                offset,
                caplen,
                available,
            });
        }
        let units = u64::from(self.order.u32(body, field::EPB_TS_HIGH)) << 32
            | u64::from(self.order.u32(body, field::EPB_TS_LOW));
        Ok(RecordMeta {
            timestamp_ns: interface.timestamp_ns(units),
            data: field::EPB_DATA..field::EPB_DATA + caplen as usize,
            orig_len: self.order.u32(body, field::EPB_ORIG_LEN),
            interface: id,
            linktype: interface.linktype,
        })
    }

    /// The packet in a Simple Packet Block body: interface 0, no timestamp.
    fn simple_packet(&self, body: &[u8], offset: u64) -> Result<RecordMeta, PcapError> {
        let interface = self.interface(0, offset)?;
        let orig_len = self.order.u32(body, field::SPB_ORIG_LEN);
        // The data is padded to 4 bytes, so the block alone does not give the caplen.
        let mut caplen = body
            .len()
            .saturating_sub(field::SPB_DATA)
            .min(orig_len as usize);
        if interface.snaplen != 0 {
            caplen = caplen.min(interface.snaplen as usize);
        }
        if caplen > MAX_CAPLEN as usize {
            return Err(PcapError::CaplenTooLarge {
                offset,
                caplen: caplen as u32,
                limit: MAX_CAPLEN,
            });
        }
        Ok(RecordMeta {
            timestamp_ns: 0,
            data: field::SPB_DATA..field::SPB_DATA + caplen,
            orig_len,
            interface: 0,
            linktype: interface.linktype,
        })
    }
}
