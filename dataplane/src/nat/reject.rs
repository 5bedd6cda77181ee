//! Refusing a connection to a service without ready endpoints, like
//! kube-proxy's `REJECT --reject-with tcp-reset`: a TCP segment is turned
//! in place into the RST its sender's stack expects (RFC 9293 §3.10.7.1:
//! `seq = SEG.ACK` if the segment acked something, else `ack = SEG.SEQ +
//! SEG.LEN` with ACK set), sent from the address and port it was sent to.
//! Other protocols get an ICMP port unreachable, built by the gateway's
//! ICMP error path under its rate limit.

use crate::packet::{Frame, Offload};
use crate::wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};
use crate::wire::{EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpPacket};

/// TTL of the resets (Linux default).
const TTL: u8 = 64;
const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;

/// Rewrites the TCP segment in `frame` (IPv4 at `l3`) into the RST that
/// answers it, from `our_mac` back to its sender. `None` (frame untouched
/// or unusable) when the segment is itself a RST or is malformed.
pub(crate) fn tcp_reset_in_place(frame: &mut Frame, l3: usize, our_mac: MacAddr) -> Option<()> {
    let data = frame.data();
    let sender_mac = EthernetFrame::new_checked(data).ok()?.src_addr();
    let ip = Ipv4Packet::new_checked(data.get(l3..)?).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags = tcp.flags();
    if flags & FLAG_RST != 0 {
        return None;
    }
    let (sport, dport) = (tcp.src_port(), tcp.dst_port());
    let (seq, ack, reply_flags) = if flags & FLAG_ACK != 0 {
        (tcp.ack_number(), 0, FLAG_RST)
    } else {
        let len = u32::try_from(tcp.payload().len()).unwrap_or(u32::MAX)
            + u32::from(flags & FLAG_SYN != 0)
            + u32::from(flags & FLAG_FIN != 0);
        (0, tcp.seq_number().wrapping_add(len), FLAG_RST | FLAG_ACK)
    };
    let new_len = l3 + IP_LEN + TCP_LEN;
    if !frame.set_len(new_len) {
        return None;
    }
    frame.offload = Offload::default();
    let data = frame.data_mut();
    let mut eth = EthernetFrame::new_checked(&mut *data).ok()?;
    eth.set_dst_addr(sender_mac);
    eth.set_src_addr(our_mac);
    let repr = Ipv4Repr {
        src_addr: dst,
        dst_addr: src,
        protocol: IpProtocol::TCP,
        payload_len: TCP_LEN as u16,
        ttl: TTL,
    };
    repr.emit(data.get_mut(l3..)?).ok()?;
    let segment = data.get_mut(l3 + IP_LEN..)?;
    segment.fill(0);
    let mut tcp = TcpPacket::new_unchecked(segment);
    tcp.set_header_len(TCP_LEN);
    tcp.set_src_port(dport);
    tcp.set_dst_port(sport);
    tcp.set_seq_number(seq);
    tcp.set_ack_number(ack);
    tcp.set_flags(reply_flags);
    tcp.fill_checksum_v4(dst, src);
    Some(())
}
