//! An address with a prefix length, for either family, with the integer
//! arithmetic IPAM needs (network, broadcast, next address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `addr/prefix`, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address (host bits may be set, e.g. a pod's address).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= max_prefix(addr)).then_some(Cidr { addr, prefix })
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        from_int(self.addr, to_int(self.addr) & !self.host_mask())
    }

    /// The last address of the prefix (IPv4 broadcast).
    pub fn last(&self) -> IpAddr {
        from_int(self.addr, to_int(self.addr) | self.host_mask())
    }

    /// True when `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && to_int(ip) & !self.host_mask() == to_int(self.addr) & !self.host_mask()
    }

    fn host_mask(&self) -> u128 {
        let bits = u32::from(max_prefix(self.addr) - self.prefix);
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// The address as an integer (IPv4 in the low 32 bits).
pub fn to_int(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An address of `family`'s kind from an integer (truncated for IPv4).
pub fn from_int(family: IpAddr, value: u128) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes_bounds() {
        let c = Cidr::parse("10.244.1.7/24").unwrap();
        assert_eq!(c.network().to_string(), "10.244.1.0");
        assert_eq!(c.last().to_string(), "10.244.1.255");
        assert!(c.contains("10.244.1.200".parse().unwrap()));
        assert!(!c.contains("10.244.2.1".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/120").unwrap();
        assert_eq!(v6.last().to_string(), "fd00::ff");
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "x/8", "10.0.0.0/+8"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
