//! The overlay's transmit TAP: a VXLAN super-frame is written into it once
//! and leaves the uplink whole, segmented (if at all) by the kernel.
//!
//! AF_PACKET's send path reads only the legacy vnet header
//! (`virtio_net_hdr_to_skb`), which cannot say "this TCP super-frame is
//! inside a UDP tunnel", so through it an encapsulated super-frame must be
//! cut in software, one outer packet per segment. Since Linux 6.17 tun
//! takes UDP-tunnel GSO from its writer (`virtio_net_hdr_tnl_to_skb`) when
//! the vnet header size is at least `virtio_net_hdr_v1_hash_tunnel`'s 24
//! bytes ([`VNET_HDR_LEN_TUNNEL`]): `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`
//! with the inner TCP type, `outer_th_offset` and `inner_nh_offset`, the
//! inner checksum partial. The skb it builds is what a kernel `vxlan`
//! device hands its underlay (`SKB_GSO_UDP_TUNNEL[_CSUM]`), so a veth
//! carries it whole to the peer node, and a NIC or the kernel's GSO cuts
//! it only where it must.
//!
//! The device ([`TunnelTxDevice`]) is a single-queue TAP named `pstx<N>`
//! (the kernel picks N), not persistent, so it goes with the daemon's last
//! descriptor; up, IPv6 off, no addresses. What is written into it arrives
//! on its receive side, where a tc ingress filter (installed by the control
//! plane) redirects every frame to the uplink's egress, with no IP
//! processing. Each worker writes through its own descriptor ([`TunnelTx`]).
//!
//! Creating the device is the capability probe: a kernel without tunnel
//! GSO in tun refuses `TUNSETOFFLOAD` with `TUN_F_UDP_TUNNEL_GSO` (unknown
//! bits are an error, so that users can test for features), and the caller
//! falls back to software segmentation.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::super::netlink::{NetlinkError, Rtnetlink};
use super::super::vnet::VNET_HDR_LEN_TUNNEL;
use super::{IfReqFlags, OFFLOAD_FLAGS, ioctl_with_mut_ref, ioctl_with_val, open_tun};

/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17 `if_tun.h`).
pub const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
/// `TUN_F_UDP_TUNNEL_GSO_CSUM` (Linux 6.17 `if_tun.h`).
pub const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;
/// The name the kernel completes (`%d`: the first free number).
const NAME_PATTERN: &str = "pstx%d";
/// `TUNSETIFF` flags: one queue, vnet headers.
const FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Why the transmit TAP could not be made (the overlay then segments in software).
#[derive(Debug, thiserror::Error)]
pub enum TunnelTxError {
    /// `/dev/net/tun` could not be opened.
    #[error("opening /dev/net/tun")]
    OpenTun(#[source] io::Error),
    /// `TUNSETIFF` failed.
    #[error("creating the TAP (TUNSETIFF {NAME_PATTERN})")]
    SetIff(#[source] io::Error),
    /// `TUNSETVNETHDRSZ 24` failed.
    #[error("setting the vnet header size to {VNET_HDR_LEN_TUNNEL} (TUNSETVNETHDRSZ)")]
    SetVnetHdrSize(#[source] io::Error),
    /// `TUNSETOFFLOAD` refused the tunnel bits: tun has no UDP-tunnel GSO (before Linux 6.17).
    #[error(
        "the kernel's TUN driver has no UDP tunnel GSO (TUNSETOFFLOAD TUN_F_UDP_TUNNEL_GSO; Linux 6.17 or later)"
    )]
    NoTunnelGso(#[source] io::Error),
    /// Bringing the device up failed.
    #[error("bringing {0} up")]
    LinkUp(String, #[source] NetlinkError),
}

/// The transmit TAP (see the module documentation). Dropping it (and every
/// [`TunnelTx`]) removes the device.
#[derive(Debug)]
pub struct TunnelTxDevice {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
}

impl TunnelTxDevice {
    /// Creates the device, probing tun's UDP-tunnel GSO, and brings it up.
    pub fn create() -> Result<TunnelTxDevice, TunnelTxError> {
        let fd = open_tun().map_err(TunnelTxError::OpenTun)?;
        let mut req = IfReqFlags::new(NAME_PATTERN, FLAGS);
        ioctl_with_mut_ref(fd.as_raw_fd(), libc::TUNSETIFF, &mut req)
            .map_err(TunnelTxError::SetIff)?;
        let name = req.name();
        let mut hdr_len = VNET_HDR_LEN_TUNNEL as libc::c_int;
        ioctl_with_mut_ref(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &mut hdr_len)
            .map_err(TunnelTxError::SetVnetHdrSize)?;
        let offload = OFFLOAD_FLAGS | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
        ioctl_with_val(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offload.into())
            .map_err(TunnelTxError::NoTunnelGso)?;
        // Nothing may be sent into it by this host (router solicitations,
        // MLD): nobody reads that side. Best effort: IPv6 may be absent.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let up = |name: &str| -> Result<u32, NetlinkError> {
            let mut nl = Rtnetlink::open()?;
            let index = nl.link_index(name)?;
            nl.link_set_up_noarp(index)?;
            Ok(index)
        };
        let ifindex = up(&name).map_err(|e| TunnelTxError::LinkUp(name.clone(), e))?;
        Ok(TunnelTxDevice { fd, name, ifindex })
    }

    /// The device's name (`pstx<N>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// A writer for one worker (its own descriptor of the device).
    pub fn writer(&self) -> io::Result<TunnelTx> {
        Ok(TunnelTx {
            fd: self.fd.try_clone()?,
        })
    }
}

/// One worker's descriptor of the transmit TAP.
#[derive(Debug)]
pub struct TunnelTx {
    fd: OwnedFd,
}

impl TunnelTx {
    /// Writes one super-frame: its tunnel vnet header, outer headers and
    /// inner frame, in one `writev` (no copy here; the kernel copies once).
    pub fn send(
        &self,
        vnet: &[u8; VNET_HDR_LEN_TUNNEL],
        outer: &[u8],
        inner: &[u8],
    ) -> io::Result<()> {
        let parts = [IoSlice::new(vnet), IoSlice::new(outer), IoSlice::new(inner)];
        let written = writev(self.fd.as_raw_fd(), &parts)?;
        let expected = vnet.len() + outer.len() + inner.len();
        if written != expected {
            return Err(io::Error::other("short write to the transmit TAP"));
        }
        Ok(())
    }
}

/// `writev(fd, parts)`.
fn writev(fd: RawFd, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = libc::c_int::try_from(parts.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: IoSlice is ABI-compatible with iovec, every slice is live for
    // the call, and the count is the array's length.
    let n = unsafe { libc::writev(fd, parts.as_ptr().cast(), count) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
