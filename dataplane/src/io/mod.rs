//! I/O: where frames enter and leave the dataplane.
//!
//! Today that is capture files ([`pcap`]): classic pcap and pcapng in,
//! classic pcap out. The benchmarks, golden tests and offline replay use
//! them. TAP (with `vnet_hdr`) and AF_PACKET rings come next, and they will
//! live here too. This is the only module where `unsafe` may appear, and
//! only with a `// SAFETY:` line per block. The pcap code needs none.

pub mod netlink;
pub mod netns;
pub mod pcap;
pub mod port;
pub mod vnet;

pub use pcap::{CaptureFormat, LINKTYPE_ETHERNET, PcapError, PcapReader, PcapRecord, PcapWriter};
pub use port::PortQueue;
