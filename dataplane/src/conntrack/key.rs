//! Connection keys (the 5-tuple of one direction) and the NAT a connection applies.

use core::net::Ipv4Addr;

use crate::wire::IpProtocol;

/// The 5-tuple of one direction of a connection, as seen on the wire.
///
/// ICMP echo uses the identifier as both ports, so that the key of an echo
/// reply is the inverted key of its request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnKey {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Source port (ICMP echo: the identifier).
    pub src_port: u16,
    /// Destination port (ICMP echo: the identifier).
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: IpProtocol,
}

impl ConnKey {
    /// A placeholder key for free slots; no packet has protocol 255 and port 0.
    pub(crate) const UNUSED: ConnKey = ConnKey {
        src_addr: Ipv4Addr::UNSPECIFIED,
        dst_addr: Ipv4Addr::UNSPECIFIED,
        src_port: 0,
        dst_port: 0,
        protocol: IpProtocol(255),
    };

    /// A TCP key.
    pub const fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> ConnKey {
        ConnKey::new(IpProtocol::TCP, src, dst)
    }

    /// A UDP key.
    pub const fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> ConnKey {
        ConnKey::new(IpProtocol::UDP, src, dst)
    }

    /// An ICMP echo key (request or reply): the identifier stands in for both ports.
    pub const fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, identifier: u16) -> ConnKey {
        ConnKey::new(IpProtocol::ICMP, (src, identifier), (dst, identifier))
    }

    /// A key for any protocol that has ports.
    pub const fn new(protocol: IpProtocol, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> ConnKey {
        ConnKey {
            src_addr: src.0,
            dst_addr: dst.0,
            src_port: src.1,
            dst_port: dst.1,
            protocol,
        }
    }

    /// The key of a packet travelling the other way.
    #[inline]
    pub const fn inverted(&self) -> ConnKey {
        ConnKey {
            src_addr: self.dst_addr,
            dst_addr: self.src_addr,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }

    /// Source address and port.
    #[inline]
    pub const fn src(&self) -> (Ipv4Addr, u16) {
        (self.src_addr, self.src_port)
    }

    /// Destination address and port.
    #[inline]
    pub const fn dst(&self) -> (Ipv4Addr, u16) {
        (self.dst_addr, self.dst_port)
    }

    /// The key as two words, for hashing and fast comparison.
    #[inline]
    pub(crate) fn words(&self) -> (u64, u64) {
        let addrs = (u64::from(self.src_addr.to_bits()) << 32) | u64::from(self.dst_addr.to_bits());
        let rest = (u64::from(self.src_port) << 32)
            | (u64::from(self.dst_port) << 16)
            | u64::from(self.protocol.0);
        (addrs, rest)
    }
}

/// The address translation a connection applies to its original direction.
///
/// Packets of the original direction get `dst` (DNAT: the chosen endpoint)
/// and `src` (SNAT: masquerade or hairpin) written in; packets of the reply
/// direction get the inverse. Translating the ICMP identifier is `src`/`dst`
/// with the new identifier as the port.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Nat {
    /// New source address and port for the original direction.
    pub src: Option<(Ipv4Addr, u16)>,
    /// New destination address and port for the original direction.
    pub dst: Option<(Ipv4Addr, u16)>,
}

impl Nat {
    /// No translation.
    pub const NONE: Nat = Nat {
        src: None,
        dst: None,
    };

    /// Destination NAT to `endpoint` (ClusterIP / NodePort).
    pub const fn dnat(endpoint: (Ipv4Addr, u16)) -> Nat {
        Nat {
            src: None,
            dst: Some(endpoint),
        }
    }

    /// The reply key of a connection whose original key is `orig`.
    #[inline]
    pub fn reply_key(&self, orig: &ConnKey) -> ConnKey {
        let (src_addr, src_port) = self.src.unwrap_or(orig.src());
        let (dst_addr, dst_port) = self.dst.unwrap_or(orig.dst());
        ConnKey {
            src_addr: dst_addr,
            dst_addr: src_addr,
            src_port: dst_port,
            dst_port: src_port,
            protocol: orig.protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 2), 40000);
    const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 96, 0, 10), 53);
    const POD: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 1, 7), 5353);
    const NODE: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 168, 1, 1), 61000);

    #[test]
    fn reply_key_without_nat_is_the_inverse() {
        let k = ConnKey::udp(CLIENT, VIP);
        assert_eq!(Nat::NONE.reply_key(&k), k.inverted());
        assert_eq!(k.inverted().inverted(), k);
    }

    #[test]
    fn reply_key_with_dnat_and_snat() {
        let k = ConnKey::tcp(CLIENT, VIP);
        assert_eq!(Nat::dnat(POD).reply_key(&k), ConnKey::tcp(POD, CLIENT));
        let both = Nat {
            src: Some(NODE),
            dst: Some(POD),
        };
        assert_eq!(both.reply_key(&k), ConnKey::tcp(POD, NODE));
    }

    #[test]
    fn icmp_echo_reply_is_inverted_request() {
        let req = ConnKey::icmp_echo(CLIENT.0, VIP.0, 0x1234);
        assert_eq!(ConnKey::icmp_echo(VIP.0, CLIENT.0, 0x1234), req.inverted());
    }
}
