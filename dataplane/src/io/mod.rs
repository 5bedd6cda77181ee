//! I/O: where frames enter and leave the dataplane.
//!
//! - Capture files ([`pcap`]): classic pcap and pcapng in, classic pcap out;
//!   the benchmarks, golden tests and offline replay use them.
//! - Live ports, behind the [`PortQueue`] trait a worker drives: [`afpacket`]
//!   (a TPACKET_V3 ring per worker in a fanout group) and TAP devices, both
//!   with virtio-net headers ([`vnet`]); [`gso`] cuts super-frames and
//!   completes partial checksums for ports without offloads; [`poll`] waits
//!   on a worker's queues.
//!
//! This is the only module where `unsafe` may appear, and only with a
//! `// SAFETY:` line per block.

pub mod afpacket;
pub mod gso;
pub mod pcap;
pub mod poll;
pub mod port;
pub mod vnet;

pub use afpacket::{AfPacketOptions, AfPacketQueue};
pub use pcap::{CaptureFormat, LINKTYPE_ETHERNET, PcapError, PcapReader, PcapRecord, PcapWriter};
pub use port::PortQueue;
