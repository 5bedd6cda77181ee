//! I/O: where frames enter and leave the dataplane.
//!
//! Capture files ([`pcap`]): classic pcap and pcapng in, classic pcap out;
//! the benchmarks, golden tests and offline replay use them. Live ports:
//! [`afpacket`] (a TPACKET_V3 ring per worker in a fanout group, with
//! virtio-net headers). This is the only module where `unsafe` may appear,
//! and only with a `// SAFETY:` line per block. The pcap code needs none.

pub mod afpacket;
pub mod pcap;
pub mod port;
pub mod vnet;

pub use afpacket::{AfPacketOptions, AfPacketQueue};
pub use pcap::{CaptureFormat, LINKTYPE_ETHERNET, PcapError, PcapReader, PcapRecord, PcapWriter};
pub use port::PortQueue;
