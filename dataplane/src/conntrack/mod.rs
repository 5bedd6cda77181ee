//! Connection tracking: the table the NAT stage (services) keeps flows in.
//!
//! A [`ConntrackTable`] holds one [`Entry`] per connection, found by either
//! its original or its reply [`ConnKey`]; the reply key carries the NAT (a
//! connection to a ClusterIP is answered by the endpoint), so a packet of
//! either direction finds the entry and the rewrite in one lookup. TCP
//! entries run a state machine with Linux's states and timeouts
//! ([`TcpState`], [`Timeouts`]); UDP and ICMP echo entries are "unreplied"
//! until the first reply and then "replied" (UDP: assured).
//!
//! The table is sized once: a preallocated entry slab (64 bytes per entry),
//! a free list and an open-addressing index of `u32` ids with a hash tag, at
//! load ≤ 0.5 for both keys of every entry — about 100 bytes per entry in
//! all, nothing allocated after [`ConntrackTable::new`]. When full, an
//! insert evicts an expired or unassured entry, or an assured TCP connection
//! already closing, like Linux's early drop; never an established one: a
//! flood of new flows is refused rather than break idle connections. Each
//! local pod's entries are counted ([`SourceCounts`]) so that one pod can be
//! held to a share of the table. Expiry is
//! incremental: [`ConntrackTable::expire`] moves a clock hand over at most
//! `budget` slots, so a worker calls it once per batch and never pauses.
//!
//! Time is the pipeline's `now_ns`; entries keep their expiry in whole
//! seconds. The table is single-owner (`&mut self`): one per worker, and
//! both directions of a flow must reach the same worker.
//!
//! ```
//! use core::net::Ipv4Addr;
//! use podswitch_dataplane::conntrack::{ConnKey, ConntrackTable, Direction, Nat, Timeouts};
//!
//! let mut table = ConntrackTable::new(1024, Timeouts::default());
//! let client = (Ipv4Addr::new(10, 0, 0, 2), 40000);
//! let service = (Ipv4Addr::new(10, 96, 0, 10), 53);
//! let endpoint = (Ipv4Addr::new(10, 244, 1, 7), 5353);
//! let now = 1_000_000_000;
//! let id = table.insert(ConnKey::udp(client, service), Nat::dnat(endpoint), now).unwrap();
//! // The endpoint's answer finds the same entry, in the reply direction.
//! let (found, dir) = table.lookup(&ConnKey::udp(endpoint, client), now).unwrap();
//! assert_eq!((found, dir), (id, Direction::Reply));
//! // ... and says which addresses the answer must carry: the service's.
//! assert_eq!(table.get(id).unwrap().rewrite(dir), (service, client));
//! ```
// No unsafe code but one line: an entry is plain data a state file may
// hold (`unsafe impl AnyBits for Entry`, in table/entry.rs).
#![deny(unsafe_code)]

mod key;
mod sources;
mod table;
mod tcp;

pub use key::{ConnKey, Nat};
pub use sources::{SOURCE_COUNTERS, SourceCounts};
#[cfg(test)]
pub(crate) use table::tcp_state_offset;
pub use table::{
    ConntrackTable, Entry, EntryId, INDEX_SLOT_BYTES, IndexReader, InsertError, KeyHasher, Listing,
    MAX_CAPACITY, TableMemory, free_list_slots,
};
pub use tcp::{TcpReject, TcpSegment, TcpState};

/// Which way a packet travels relative to the connection's first packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Direction {
    /// Same way as the packet that created the entry.
    Original = 0,
    /// The answer.
    Reply = 1,
}

impl Direction {
    /// The other direction.
    #[inline]
    pub const fn opposite(self) -> Direction {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }
}

/// Timeouts in seconds; the defaults are Linux's `nf_conntrack` ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    /// TCP SYN_SENT (and NONE, and SYN_SENT2 of a simultaneous open).
    pub tcp_syn_sent: u32,
    /// TCP SYN_RECV.
    pub tcp_syn_recv: u32,
    /// TCP ESTABLISHED.
    pub tcp_established: u32,
    /// TCP FIN_WAIT.
    pub tcp_fin_wait: u32,
    /// TCP CLOSE_WAIT.
    pub tcp_close_wait: u32,
    /// TCP LAST_ACK.
    pub tcp_last_ack: u32,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: u32,
    /// TCP CLOSE.
    pub tcp_close: u32,
    /// UDP before the first reply.
    pub udp_unreplied: u32,
    /// UDP once replied (assured).
    pub udp_assured: u32,
    /// ICMP echo.
    pub icmp: u32,
    /// Any other protocol.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_assured: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

impl Timeouts {
    /// The timeout of a TCP connection in `state`.
    pub const fn tcp(&self, state: TcpState) -> u32 {
        match state {
            TcpState::None | TcpState::SynSent | TcpState::SynSent2 => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

/// What the table did, by reason; plain counters of one worker's table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ConntrackStats {
    /// Entries created.
    pub inserted: u64,
    /// Entries removed by [`ConntrackTable::remove`].
    pub removed: u64,
    /// Entries removed because their timeout ran out.
    pub expired: u64,
    /// Entries evicted to make room: unassured ones.
    pub evicted_unassured: u64,
    /// Entries evicted to make room: assured TCP connections already
    /// closing (FIN_WAIT to CLOSE); established ones never are.
    pub evicted_assured: u64,
    /// Inserts refused because a live entry holds one of the keys.
    pub clashes: u64,
    /// TCP segments whose flags make no sense in the state.
    pub tcp_invalid: u64,
    /// TCP segments outside the window.
    pub tcp_out_of_window: u64,
    /// TCP segments Linux would ignore (no state change).
    pub tcp_ignored: u64,
}

impl ConntrackStats {
    /// All evictions.
    pub const fn evicted(&self) -> u64 {
        self.evicted_unassured + self.evicted_assured
    }

    /// The evictions by kind.
    pub const fn evictions(&self) -> Evictions {
        Evictions {
            unassured: self.evicted_unassured,
            closing: self.evicted_assured,
        }
    }
}

/// Entries evicted to make room, by kind (see [`ConntrackStats`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Evictions {
    /// Unassured entries.
    pub unassured: u64,
    /// Assured TCP connections already closing.
    pub closing: u64,
}

impl Evictions {
    /// The evictions since `before`.
    pub const fn since(self, before: Evictions) -> Evictions {
        Evictions {
            unassured: self.unassured.wrapping_sub(before.unassured),
            closing: self.closing.wrapping_sub(before.closing),
        }
    }
}
