//! I/O: where frames enter and leave the dataplane.
//!
//! - Capture files ([`pcap`]): classic pcap and pcapng in, classic pcap out;
//!   the benchmarks, golden tests and offline replay use them.
//! - Live ports, behind the [`PortQueue`] trait a worker drives: [`tap`]
//!   (multi-queue TAPs, placed into pods with [`netlink`] and [`netns`]) and
//!   [`afpacket`] (a TPACKET_V3 ring per worker in a fanout group), both with
//!   virtio-net headers ([`vnet`]); [`gso`] cuts super-frames and completes
//!   partial checksums for ports without offloads, [`fragment`] cuts IPv4
//!   packets longer than a port's MTU into fragments, [`egress_mtu`] cuts
//!   any frame to its port's MTU with both; [`poll`] waits on a
//!   worker's queues; [`port_state`] says which ports are down and why.
//!   The overlay's transmit TAP ([`tap::tunnel_tx`]) sends VXLAN
//!   super-frames out of the uplink whole (UDP-tunnel GSO).
//!
//! With [`crate::mem`] this is the only module where `unsafe` may appear,
//! and only with a `// SAFETY:` line per block.

pub mod afpacket;
pub mod egress_mtu;
pub mod fragment;
pub mod gso;
pub mod netlink;
pub mod netns;
pub mod pcap;
pub mod poll;
pub mod port;
pub mod port_state;
pub mod tap;
pub mod vnet;

pub use afpacket::{AfPacketOptions, AfPacketQueue};
pub use netlink::{LinkState, NetlinkError, Rtnetlink};
pub use netns::run_in_netns;
pub use pcap::{CaptureFormat, LINKTYPE_ETHERNET, PcapError, PcapReader, PcapRecord, PcapWriter};
pub use port::{DeviceDrops, PortQueue};
pub use port_state::PortStates;
pub use tap::tunnel_tx::{TunnelTx, TunnelTxDevice, TunnelTxError};
pub use tap::{
    PodPlacement, TapError, TapOptions, TapQueue, attach_pod_tap, attach_tap, create_pod_tap,
    create_tap, delete_pod_tap,
};
