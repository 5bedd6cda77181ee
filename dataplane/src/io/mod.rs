//! I/O: where frames enter and leave the dataplane.
//!
//! Capture files ([`pcap`]): classic pcap and pcapng in, classic pcap out,
//! for the benchmarks, golden tests and offline replay. Live ports: [`tap`]
//! (multi-queue TAPs with virtio-net headers, [`vnet`]), placed into pods
//! with [`netlink`] and [`netns`]; each worker drives one [`PortQueue`].
//! AF_PACKET rings come next. This is the only module where `unsafe` may
//! appear, and only with a `// SAFETY:` line per block. The pcap code
//! needs none.

pub mod netlink;
pub mod netns;
pub mod pcap;
pub mod port;
pub mod tap;
pub mod vnet;

pub use netlink::{LinkState, NetlinkError, Rtnetlink};
pub use netns::run_in_netns;
pub use pcap::{CaptureFormat, LINKTYPE_ETHERNET, PcapError, PcapReader, PcapRecord, PcapWriter};
pub use port::PortQueue;
pub use tap::{
    PodPlacement, TapError, TapOptions, TapQueue, attach_pod_tap, attach_tap, create_pod_tap,
    create_tap, delete_pod_tap,
};
