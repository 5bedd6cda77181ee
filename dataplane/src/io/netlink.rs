//! A small synchronous rtnetlink client: the handful of link, address and
//! route operations that placing a pod's TAP needs.
//!
//! Why not `rtnetlink`: it is async on tokio, and the callers here run on a
//! short-lived thread inside another netns ([`super::netns::run_in_netns`]),
//! where a runtime would be dead weight. The message formats come from
//! `netlink-packet-route` (no hand-written attribute layouts), the socket
//! from `netlink-sys`; this module adds one request/answer loop.
//!
//! Every request carries `NLM_F_ACK` and waits for its acknowledgement. A
//! refusal becomes [`NetlinkError::Refused`] with the errno as `#[source]`
//! and, when the kernel gave one, its extended-ack message ("Invalid
//! prefix for given prefix length" and the like). The socket belongs to the
//! netns of the thread that opened it.

#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::wire::ethernet::MacAddr;

/// Longest interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// Receive timeout: the kernel answers at once; this only bounds a bug.
const RECV_TIMEOUT_SECS: libc::time_t = 5;
/// Datagrams read for one request before giving up.
const MAX_DATAGRAMS: usize = 1024;
/// Receive buffer: larger than any single rtnetlink datagram the kernel sends.
const RECV_BUF_LEN: usize = 64 * 1024;
/// `NLMSGERR_ATTR_MSG`: the extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLM_F_CAPPED`: the error echoes only the request's header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow the echoed request.
const NLM_F_ACK_TLVS: u16 = 0x200;

/// A failed rtnetlink operation; `op` names the operation and its arguments.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, bound or configured.
    #[error("opening an rtnetlink socket")]
    Open(#[source] io::Error),
    /// The request could not be sent.
    #[error("{op}: sending the request")]
    Send {
        /// The operation.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The answer could not be read.
    #[error("{op}: reading the answer")]
    Recv {
        /// The operation.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered `NLMSG_ERROR` with a non-zero code.
    #[error("{op}: refused by the kernel{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Refused {
        /// The operation.
        op: String,
        /// The kernel's extended-ack message, if any.
        message: Option<String>,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The answer could not be decoded.
    #[error("{op}: undecodable answer")]
    Decode {
        /// The operation.
        op: String,
        /// The decoder's complaint.
        #[source]
        source: DecodeError,
    },
    /// The answer lacked what the operation asked for.
    #[error("{op}: the answer has no {what}")]
    Incomplete {
        /// The operation.
        op: String,
        /// The missing part.
        what: &'static str,
    },
    /// An interface name that the kernel would refuse.
    #[error(
        "interface name {0:?} is empty, longer than 15 bytes or contains '/', ':' or whitespace"
    )]
    BadName(String),
    /// A prefix length over 32.
    #[error("IPv4 prefix length {0} is larger than 32")]
    BadPrefixLen(u8),
}

impl NetlinkError {
    /// The errno of a refusal or I/O failure, if there was one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetlinkError::Open(e)
            | NetlinkError::Send { source: e, .. }
            | NetlinkError::Recv { source: e, .. }
            | NetlinkError::Refused { source: e, .. } => e.raw_os_error(),
            _ => None,
        }
    }

    /// True when the kernel said the link does not exist (`ENODEV`).
    pub fn is_no_such_link(&self) -> bool {
        self.raw_os_error() == Some(libc::ENODEV)
    }
}

/// What [`Rtnetlink::link_by_name`] and [`Rtnetlink::link_by_index`] report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address (zero for links without one).
    pub mac: MacAddr,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn check_ifname(name: &str) -> Result<(), NetlinkError> {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if bad {
        return Err(NetlinkError::BadName(name.to_owned()));
    }
    Ok(())
}

/// An rtnetlink socket in the netns of the thread that opened it.
pub struct Rtnetlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnetlink {
    /// Opens a `NETLINK_ROUTE` socket with extended acks.
    pub fn open() -> Result<Rtnetlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        socket.set_ext_ack(true).map_err(NetlinkError::Open)?;
        socket.set_cap_ack(true).map_err(NetlinkError::Open)?;
        set_recv_timeout(socket.as_raw_fd(), RECV_TIMEOUT_SECS).map_err(NetlinkError::Open)?;
        Ok(Rtnetlink {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// The link called `name`.
    pub fn link_by_name(&mut self, name: &str) -> Result<LinkState, NetlinkError> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(&format!("link_by_name({name})"), msg)
    }

    /// The link with index `index`.
    pub fn link_by_index(&mut self, index: u32) -> Result<LinkState, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(&format!("link_by_index({index})"), msg)
    }

    /// The index of the link called `name` (an `ENODEV` refusal if none).
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        Ok(self.link_by_name(name)?.index)
    }

    /// The hardware address of link `index`.
    pub fn link_mac(&mut self, index: u32) -> Result<MacAddr, NetlinkError> {
        Ok(self.link_by_index(index)?.mac)
    }

    /// Moves link `index` into the netns open at `netns_fd`.
    pub fn link_set_netns(
        &mut self,
        index: u32,
        netns_fd: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let op = format!("link_set_netns({index}, fd {})", netns_fd.as_raw_fd());
        self.set_link(&op, index, LinkAttribute::NetNsFd(netns_fd.as_raw_fd()))
    }

    /// Renames link `index` (it must be down).
    pub fn link_set_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        check_ifname(name)?;
        let op = format!("link_set_name({index}, {name})");
        self.set_link(&op, index, LinkAttribute::IfName(name.to_owned()))
    }

    /// Sets the hardware address of link `index`.
    pub fn link_set_mac(&mut self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        let op = format!("link_set_mac({index}, {mac})");
        self.set_link(&op, index, LinkAttribute::Address(mac.octets().to_vec()))
    }

    /// Sets the MTU of link `index`.
    pub fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let op = format!("link_set_mtu({index}, {mtu})");
        self.set_link(&op, index, LinkAttribute::Mtu(mtu))
    }

    /// Makes link `index` form its IPv6 link-local address by modified
    /// EUI-64 from its MAC (`addr_gen_mode` `eui64`), whatever the netns
    /// defaults say; the address is formed when the link comes up.
    pub fn link_set_addr_gen_mode_eui64(&mut self, index: u32) -> Result<(), NetlinkError> {
        let op = format!("link_set_addr_gen_mode_eui64({index})");
        let mode = AfSpecInet6::AddrGenMode(In6AddrGenMode::Eui64);
        let spec = LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![mode])]);
        self.set_link(&op, index, spec)
    }

    /// Brings link `index` administratively up.
    pub fn link_set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("link_set_up({index})"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .map(drop)
    }

    /// Brings link `index` up with ARP off (`IFF_NOARP`): for the mirror
    /// interface, whose frames the kernel must not answer.
    pub fn link_set_up_noarp(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up | LinkFlags::Noarp;
        msg.header.change_mask = LinkFlags::Up | LinkFlags::Noarp;
        self.request(
            &format!("link_set_up_noarp({index})"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .map(drop)
    }

    /// Deletes link `index`.
    pub fn link_del(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            &format!("link_del({index})"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
        .map(drop)
    }

    /// Adds `addr/prefix_len` to link `index` (with the broadcast address
    /// for prefixes up to /30, as `ip addr add ... brd +` does).
    pub fn addr_add_v4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = address_message(index, addr, prefix_len)?;
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix_len <= 30 {
            let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(addr) | host_mask);
            msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        let op = format!("addr_add_v4({index}, {addr}/{prefix_len})");
        self.request(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 addresses of link `index`, with their prefix lengths.
    pub fn addrs_v4(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let op = format!("addrs_v4({index})");
        let all = self.dump_addrs_v4(&op, index)?;
        Ok(all
            .into_iter()
            .filter(|(link, _, _)| *link == index)
            .map(|(_, addr, prefix_len)| (addr, prefix_len))
            .collect())
    }

    /// Every IPv4 address of the namespace: (link index, address, prefix length).
    pub fn all_addrs_v4(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
        self.dump_addrs_v4("all_addrs_v4", 0)
    }

    /// An address dump (the kernel ignores `index` in a dump request).
    fn dump_addrs_v4(
        &mut self,
        op: &str,
        index: u32,
    ) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.index = index;
        let answers = self.request(op, RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(a) = answer else {
                continue;
            };
            for attribute in &a.attributes {
                if let AddressAttribute::Local(IpAddr::V4(addr)) = attribute {
                    out.push((a.header.index, *addr, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// Removes `addr/prefix_len` from link `index`.
    pub fn addr_del_v4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let msg = address_message(index, addr, prefix_len)?;
        let op = format!("addr_del_v4({index}, {addr}/{prefix_len})");
        self.request(&op, RouteNetlinkMessage::DelAddress(msg), 0)
            .map(drop)
    }

    /// Adds the route `dst/prefix_len` to the main table: via `gateway` when
    /// given (scope universe), otherwise on-link (scope link), out of `oif`
    /// when given. `0.0.0.0/0` is the default route.
    pub fn route_add_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        self.route_v4("route_add_v4", dst, prefix_len, gateway, oif, NLM_F_EXCL)
    }

    /// As [`Rtnetlink::route_add_v4`], replacing the route to
    /// `dst/prefix_len` if there is one (`ip route replace`).
    pub fn route_replace_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        self.route_v4(
            "route_replace_v4",
            dst,
            prefix_len,
            gateway,
            oif,
            NLM_F_REPLACE,
        )
    }

    /// Replaces the route to `dst/prefix_len` by one via `gateway`, taken
    /// as on-link, out of `oif`, with `src` as the preferred source (`ip
    /// route replace DST via GW dev IF onlink src SRC`): how the node's
    /// stack reaches the pods through podswitch's host port, whose only
    /// address is a /32.
    pub fn route_replace_v4_onlink(
        &mut self,
        (dst, prefix_len): (Ipv4Addr, u8),
        gateway: Ipv4Addr,
        oif: u32,
        src: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut msg = route_message(dst, prefix_len, RouteScope::Universe)?;
        msg.header.flags = RouteFlags::Onlink;
        msg.attributes.extend([
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(oif),
            RouteAttribute::PrefSource(RouteAddress::Inet(src)),
        ]);
        let op = format!(
            "route_replace_v4_onlink({dst}/{prefix_len} via {gateway} oif {oif} src {src})"
        );
        self.request(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    fn route_v4(
        &mut self,
        verb: &str,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        let mut msg = route_message(dst, prefix_len, scope)?;
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = oif.map(|i| format!(" oif {i}")).unwrap_or_default();
        let op = format!("{verb}({dst}/{prefix_len}{via}{dev})");
        self.request(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | flags,
        )
        .map(drop)
    }

    fn set_link(
        &mut self,
        op: &str,
        index: u32,
        attribute: LinkAttribute,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attribute);
        self.request(op, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    fn get_link(&mut self, op: &str, msg: LinkMessage) -> Result<LinkState, NetlinkError> {
        let answers = self.request(op, RouteNetlinkMessage::GetLink(msg), 0)?;
        let link = answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .ok_or_else(|| incomplete(op, "link message"))?;
        let mut state = LinkState {
            index: link.header.index,
            name: String::new(),
            mac: MacAddr::ZERO,
            mtu: 0,
            up: link.header.flags.contains(LinkFlags::Up),
        };
        for attribute in link.attributes {
            match attribute {
                LinkAttribute::IfName(name) => state.name = name,
                LinkAttribute::Address(bytes) => {
                    state.mac = MacAddr::from_bytes(&bytes).unwrap_or(MacAddr::ZERO);
                }
                LinkAttribute::Mtu(mtu) => state.mtu = mtu,
                _ => {}
            }
        }
        Ok(state)
    }

    /// Sends one request and collects its answers up to the acknowledgement.
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(message));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|source| NetlinkError::Send {
                op: op.to_owned(),
                source,
            })?;

        let mut answers = Vec::new();
        for _ in 0..MAX_DATAGRAMS {
            self.buf.clear();
            self.buf.reserve(RECV_BUF_LEN);
            self.socket
                .recv(&mut self.buf, 0)
                .map_err(|source| NetlinkError::Recv {
                    op: op.to_owned(),
                    source,
                })?;
            if let Some(done) = self.take_answers(op, seq, &mut answers)? {
                return done.map(|()| answers);
            }
        }
        Err(incomplete(op, "acknowledgement"))
    }

    /// Parses one datagram; `Some(result)` once the request is finished.
    fn take_answers(
        &self,
        op: &str,
        seq: u32,
        answers: &mut Vec<RouteNetlinkMessage>,
    ) -> Result<Option<Result<(), NetlinkError>>, NetlinkError> {
        let decode = |source| NetlinkError::Decode {
            op: op.to_owned(),
            source,
        };
        let mut rest = self.buf.as_slice();
        while !rest.is_empty() {
            let len = NetlinkBuffer::new_checked(rest).map_err(decode)?.length() as usize;
            let bytes = rest
                .get(..len)
                .ok_or_else(|| incomplete(op, "complete message"))?;
            rest = rest.get(align4(len)..).unwrap_or(&[]);
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(decode)?;
            if msg.header.sequence_number != seq {
                continue;
            }
            match msg.payload {
                NetlinkPayload::Error(e) => {
                    let Some(code) = e.code else {
                        return Ok(Some(Ok(())));
                    };
                    return Ok(Some(Err(NetlinkError::Refused {
                        op: op.to_owned(),
                        message: ext_ack_message(msg.header.flags, &e.header),
                        source: io::Error::from_raw_os_error(code.get().saturating_abs()),
                    })));
                }
                NetlinkPayload::Done(_) => return Ok(Some(Ok(()))),
                NetlinkPayload::InnerMessage(m) => answers.push(m),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// A unicast IPv4 route of the main table to `dst/prefix_len` with
/// `scope` (`0.0.0.0/0`, the default route, carries no destination).
fn route_message(
    dst: Ipv4Addr,
    prefix_len: u8,
    scope: RouteScope,
) -> Result<RouteMessage, NetlinkError> {
    if prefix_len > 32 {
        return Err(NetlinkError::BadPrefixLen(prefix_len));
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = prefix_len;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = scope;
    msg.header.kind = RouteType::Unicast;
    if prefix_len > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    }
    Ok(msg)
}

/// An address message for `addr/prefix_len` on link `index` (its local address set).
fn address_message(
    index: u32,
    addr: Ipv4Addr,
    prefix_len: u8,
) -> Result<AddressMessage, NetlinkError> {
    if prefix_len > 32 {
        return Err(NetlinkError::BadPrefixLen(prefix_len));
    }
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes
        .push(AddressAttribute::Local(IpAddr::V4(addr)));
    Ok(msg)
}

fn incomplete(op: &str, what: &'static str) -> NetlinkError {
    NetlinkError::Incomplete {
        op: op.to_owned(),
        what,
    }
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// The `NLMSGERR_ATTR_MSG` text of an error whose payload (after the errno)
/// is `echoed`: the request (or its header alone when capped), then TLVs.
fn ext_ack_message(flags: u16, echoed: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(echoed.get(..4)?.try_into().ok()?) as usize
    };
    let mut tlvs = echoed.get(align4(request_len)..)?;
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        let value = tlvs.get(4..len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|&b| b == 0).next().unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get(align4(len.max(4))..)?;
    }
    None
}

/// `SO_RCVTIMEO` on `fd`.
fn set_recv_timeout(fd: i32, secs: libc::time_t) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a live timeval and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
