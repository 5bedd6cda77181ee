//! The transport protocols a service port can have.

use crate::wire::IpProtocol;

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// SCTP (IP protocol 132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IpProtocol::TCP.0,
            Protocol::Udp => IpProtocol::UDP.0,
            Protocol::Sctp => IpProtocol::SCTP.0,
        }
    }

    /// The protocol for an IP protocol number, if services can use it.
    #[inline]
    pub const fn from_number(proto: u8) -> Option<Protocol> {
        match IpProtocol(proto) {
            IpProtocol::TCP => Some(Protocol::Tcp),
            IpProtocol::UDP => Some(Protocol::Udp),
            IpProtocol::SCTP => Some(Protocol::Sctp),
            _ => None,
        }
    }
}
