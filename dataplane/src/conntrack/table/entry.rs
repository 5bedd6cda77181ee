//! One tracked connection: its two keys, TCP state, expiry and flags.

use core::fmt;
use core::net::Ipv4Addr;

use super::seconds;
use crate::conntrack::key::{ConnKey, Nat};
use crate::conntrack::tcp::{TcpReject, TcpSegment, TcpState, TcpTracking};
use crate::conntrack::{ConntrackStats, Direction, Timeouts};
use crate::mem::statefile::AnyBits;
use crate::wire::IpProtocol;

pub(super) const IN_USE: u8 = 1;
pub(super) const ASSURED: u8 = 2;
pub(super) const REPLIED: u8 = 4;
/// Counted in [`SourceCounts`] under its original source address.
pub(super) const CHARGED: u8 = 8;

/// Names an entry; valid until the entry is removed or evicted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EntryId(pub(super) u32);

impl EntryId {
    /// Names no entry (a placeholder).
    pub const NONE: EntryId = EntryId(u32::MAX);

    /// The id of slot `index` (tests).
    #[cfg(test)]
    pub(crate) const fn from_index(index: u32) -> EntryId {
        EntryId(index)
    }

    /// The slot number, for diagnostics.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// One tracked connection (64 bytes).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub(super) original: ConnKey,
    pub(super) reply: ConnKey,
    pub(super) tcp: TcpTracking,
    /// Table time in seconds at which the entry dies.
    pub(super) expires: u32,
    pub(super) flags: u8,
    /// A tag the owner keeps with the entry (the NAT stage: the services
    /// generation the entry was last validated against).
    pub(super) mark: u16,
}

impl Entry {
    pub(super) const FREE: Entry = Entry {
        original: ConnKey::UNUSED,
        reply: ConnKey::UNUSED,
        tcp: TcpTracking::NEW,
        expires: 0,
        flags: 0,
        mark: 0,
    };

    /// The key of the original direction.
    pub const fn original(&self) -> &ConnKey {
        &self.original
    }

    /// The key of the reply direction (carries the NAT).
    pub const fn reply(&self) -> &ConnKey {
        &self.reply
    }

    /// The key of direction `dir`.
    pub const fn key(&self, dir: Direction) -> &ConnKey {
        match dir {
            Direction::Original => &self.original,
            Direction::Reply => &self.reply,
        }
    }

    /// IP protocol.
    pub const fn protocol(&self) -> IpProtocol {
        self.original.protocol
    }

    /// The TCP state (NONE for other protocols).
    pub fn tcp_state(&self) -> TcpState {
        self.tcp.state()
    }

    /// Seen in both directions and, for TCP, through the handshake.
    pub const fn is_assured(&self) -> bool {
        self.flags & ASSURED != 0
    }

    /// A packet of the reply direction was seen.
    pub const fn is_replied(&self) -> bool {
        self.flags & REPLIED != 0
    }

    /// The translation recorded for the original direction.
    pub fn nat(&self) -> Nat {
        let inverse = self.reply.inverted();
        Nat {
            src: (inverse.src() != self.original.src()).then_some(inverse.src()),
            dst: (inverse.dst() != self.original.dst()).then_some(inverse.dst()),
        }
    }

    /// The `(source, destination)` a packet of direction `dir` must carry
    /// after translation: the other direction's key, inverted.
    #[inline]
    pub const fn rewrite(&self, dir: Direction) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
        let other = self.key(dir.opposite());
        (other.dst(), other.src())
    }

    /// The owner's tag (see [`ConntrackTable::set_mark`](super::ConntrackTable::set_mark)).
    pub const fn mark(&self) -> u16 {
        self.mark
    }

    /// Seconds left at `now_ns`.
    pub fn remaining_secs(&self, now_ns: u64) -> u32 {
        self.expires.saturating_sub(seconds(now_ns))
    }

    /// A `conntrack -L` style line.
    pub const fn listing(&self, now_ns: u64) -> Listing<'_> {
        Listing {
            entry: self,
            now_ns,
        }
    }

    /// Whether an entry read from a state file holds what this build
    /// writes: a free one anything, one in use a known TCP state (any
    /// bytes are a valid `Entry`; this finds a damaged file).
    pub(crate) fn is_sound(&self) -> bool {
        !self.in_use() || self.tcp.state_is_known()
    }

    /// A fingerprint of how this build lays entries out: a state file
    /// written by a build with another layout is not read.
    pub(crate) fn layout_fingerprint() -> u64 {
        use core::mem::offset_of;
        let fields = [
            size_of::<Entry>(),
            offset_of!(Entry, original),
            offset_of!(Entry, reply),
            offset_of!(Entry, tcp),
            offset_of!(Entry, expires),
            offset_of!(Entry, flags),
            offset_of!(Entry, mark),
            size_of::<ConnKey>(),
            offset_of!(ConnKey, src_addr),
            offset_of!(ConnKey, dst_addr),
            offset_of!(ConnKey, src_port),
            offset_of!(ConnKey, dst_port),
            offset_of!(ConnKey, protocol),
        ];
        let tcp = TcpTracking::layout();
        // FNV-1a over the offsets: stable across builds and platforms.
        fields
            .iter()
            .chain(&tcp)
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &v| {
                (h ^ v as u64).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    pub(super) fn in_use(&self) -> bool {
        self.flags & IN_USE != 0
    }

    pub(super) fn live(&self, now: u32) -> bool {
        self.in_use() && self.expires > now
    }
}

// SAFETY: every field is an integer, an array of integers, or a struct of
// them (`Ipv4Addr` is four bytes, `IpProtocol` one, the TCP state a byte
// read through `TcpState::from_number`): any bytes are a valid `Entry`, and
// it needs no drop.
#[allow(unsafe_code)]
unsafe impl AnyBits for Entry {}

/// Where an entry keeps its TCP state byte (tests damage it).
#[cfg(test)]
pub(crate) fn tcp_state_offset() -> usize {
    core::mem::offset_of!(Entry, tcp) + TcpTracking::layout()[6]
}

/// Shows an entry as `conntrack -L` does.
#[derive(Debug)]
pub struct Listing<'a> {
    pub(super) entry: &'a Entry,
    pub(super) now_ns: u64,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entry;
        let proto = e.protocol();
        let name = match proto {
            IpProtocol::TCP => "tcp",
            IpProtocol::UDP => "udp",
            IpProtocol::ICMP => "icmp",
            _ => "unknown",
        };
        write!(f, "{name:<8}{} {}", proto.0, e.remaining_secs(self.now_ns))?;
        if proto == IpProtocol::TCP {
            write!(f, " {}", e.tcp_state().name())?;
        }
        let tuple = |f: &mut fmt::Formatter<'_>, k: &ConnKey| {
            if proto == IpProtocol::ICMP {
                write!(
                    f,
                    " src={} dst={} id={}",
                    k.src_addr, k.dst_addr, k.src_port
                )
            } else {
                write!(
                    f,
                    " src={} dst={} sport={} dport={}",
                    k.src_addr, k.dst_addr, k.src_port, k.dst_port
                )
            }
        };
        tuple(f, &e.original)?;
        if !e.is_replied() {
            f.write_str(" [UNREPLIED]")?;
        }
        tuple(f, &e.reply)?;
        if e.is_assured() {
            f.write_str(" [ASSURED]")?;
        }
        Ok(())
    }
}

/// [`ConntrackTable::update`] on the entry.
#[inline]
pub(super) fn update_entry(e: &mut Entry, t: &Timeouts, dir: Direction, now_ns: u64) {
    if dir == Direction::Reply {
        e.flags |= REPLIED;
    }
    let timeout = match e.original.protocol {
        IpProtocol::UDP if e.flags & REPLIED != 0 => {
            e.flags |= ASSURED;
            t.udp_assured
        }
        IpProtocol::UDP => t.udp_unreplied,
        IpProtocol::ICMP => t.icmp,
        _ => t.generic,
    };
    e.expires = seconds(now_ns).saturating_add(timeout);
}

/// [`ConntrackTable::update_tcp`] on the entry.
#[inline]
pub(super) fn update_tcp_entry(
    e: &mut Entry,
    (timeouts, stats): (&Timeouts, &mut ConntrackStats),
    dir: Direction,
    segment: &TcpSegment,
    now_ns: u64,
) -> Result<TcpState, TcpReject> {
    match e.tcp.track(dir, segment) {
        Ok(state) => {
            if dir == Direction::Reply {
                e.flags |= REPLIED;
            }
            if state == TcpState::Established && e.tcp.seen_reply() {
                e.flags |= ASSURED;
            }
            e.expires = seconds(now_ns).saturating_add(timeouts.tcp(state));
            Ok(state)
        }
        Err(reason) => {
            match reason {
                TcpReject::Ignored => stats.tcp_ignored += 1,
                TcpReject::InvalidTransition => stats.tcp_invalid += 1,
                TcpReject::OutOfWindow => stats.tcp_out_of_window += 1,
            }
            Err(reason)
        }
    }
}
