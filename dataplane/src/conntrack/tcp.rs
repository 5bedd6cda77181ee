//! The TCP state machine and a simplified window check.
//!
//! The transitions follow Linux's `tcp_conntracks` table
//! (`nf_conntrack_proto_tcp.c`), including SYN_SENT2 for a simultaneous
//! open (a SYN answered by a SYN, then a SYN-ACK from each side), minus the
//! unused LISTEN state. A SYN from the responder in TIME_WAIT is ignored
//! (Linux reopens; only a reopen from the originator is supported here).
//!
//! The window check keeps, per direction, the highest sequence number sent
//! (`end`), the highest sequence number the peer allowed (`max_end`, from its
//! ack + window) and the largest window the direction advertised
//! (`max_window`) — the four conditions of Linux's `tcp_in_window`:
//! the segment starts at or before `max_end`, ends no earlier than one peer
//! window behind `end`, and acks nothing the peer has not sent yet nor more
//! than one window behind it. Simplified against Linux: no SACK blocks (the
//! ack number alone is checked), no retransmission counting, and
//! connections picked up mid-stream (first packet a plain ACK) are tracked
//! without window checks because their window scale is unknown (Linux calls
//! these "liberal").

use super::Direction;
use crate::wire::TcpPacket;
use crate::wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};

mod layout;

/// The state of a tracked TCP connection (Linux's names).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(u8)]
pub enum TcpState {
    /// Nothing seen yet.
    #[default]
    None,
    /// SYN seen from the originator.
    SynSent,
    /// SYN-ACK seen from the responder.
    SynRecv,
    /// The handshake completed (or the connection was picked up mid-stream).
    Established,
    /// A FIN was seen.
    FinWait,
    /// The FIN was acknowledged.
    CloseWait,
    /// FINs seen in both directions.
    LastAck,
    /// The last FIN was acknowledged.
    TimeWait,
    /// A RST was seen.
    Close,
    /// SYNs seen from both sides: a simultaneous open.
    SynSent2,
}

impl TcpState {
    /// Every state, in table order.
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The state numbered `number` in [`ALL`](Self::ALL); a number that
    /// names none (a damaged state file) reads as `Close`, a connection
    /// the table lets go soon.
    #[inline]
    pub const fn from_number(number: u8) -> TcpState {
        if (number as usize) < TcpState::ALL.len() {
            TcpState::ALL[number as usize]
        } else {
            TcpState::Close
        }
    }

    /// A connection on its way out (a FIN or RST seen): Linux's
    /// `tcp_can_early_drop`, what a full table may evict even if assured.
    pub const fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }

    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

/// What the tracker needs from one TCP segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpSegment {
    /// The flags byte (`wire::tcp::FLAG_*`).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    /// Payload bytes.
    pub payload_len: u32,
    /// The window scale option, when the segment is a SYN carrying one.
    pub window_scale: Option<u8>,
}

impl TcpSegment {
    /// Reads a segment from a checked TCP view; parses options only on SYN.
    pub fn from_packet<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> TcpSegment {
        let flags = tcp.flags();
        TcpSegment {
            flags,
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            window: tcp.window(),
            payload_len: u32::try_from(tcp.payload().len()).unwrap_or(u32::MAX),
            window_scale: if flags & FLAG_SYN != 0 {
                window_scale_option(tcp.options())
            } else {
                None
            },
        }
    }

    /// Whether this segment may create a connection entry: a SYN, or a plain
    /// ACK (mid-stream pickup, e.g. after a restart).
    pub const fn can_open(&self) -> bool {
        let f = self.flags & (FLAG_SYN | FLAG_ACK | FLAG_RST | FLAG_FIN);
        f == FLAG_SYN || f == FLAG_ACK
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The window scale option (kind 3) in `options`, if present and well formed.
fn window_scale_option(mut options: &[u8]) -> Option<u8> {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return None,
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > options.len() {
                    return None;
                }
                if kind == 3 && len == 3 {
                    return rest.get(1).map(|s| (*s).min(14));
                }
                options = &options[len..];
            }
        }
    }
    None
}

/// Why a segment did not advance the state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpReject {
    /// Linux ignores it (e.g. a SYN on an established connection); no state change.
    Ignored,
    /// The flags make no sense in this state (e.g. SYN-ACK from the originator).
    InvalidTransition,
    /// The sequence or acknowledgement number is outside the window.
    OutOfWindow,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    To(TcpState),
    Ignore,
    Invalid,
}

/// Index of a segment's flags in the transition table, as Linux's `get_conntrack_index`.
fn flag_index(flags: u8) -> Option<usize> {
    if flags & FLAG_RST != 0 {
        Some(4)
    } else if flags & FLAG_SYN != 0 {
        Some(if flags & FLAG_ACK != 0 { 1 } else { 0 })
    } else if flags & FLAG_FIN != 0 {
        Some(2)
    } else if flags & FLAG_ACK != 0 {
        Some(3)
    } else {
        None
    }
}

use Next::{Ignore as IG, Invalid as IV};
use TcpState as S;
const NO: Next = Next::To(S::None);
const SS: Next = Next::To(S::SynSent);
const SR: Next = Next::To(S::SynRecv);
const ES: Next = Next::To(S::Established);
const FW: Next = Next::To(S::FinWait);
const CW: Next = Next::To(S::CloseWait);
const LA: Next = Next::To(S::LastAck);
const TW: Next = Next::To(S::TimeWait);
const CL: Next = Next::To(S::Close);
const S2: Next = Next::To(S::SynSent2);

/// `TRANSITIONS[direction][flag index][state]`; columns follow `TcpState::ALL`.
#[rustfmt::skip]
const TRANSITIONS: [[[Next; 10]; 5]; 2] = [
    // Original direction.   NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
    [
        /* syn    */        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    // Reply direction.      NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
    [
        /* syn    */        [IV, S2, IV, IV, IV, IV, IV, IG, IV, S2],
        /* synack */        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
];

// Silence "unused" for NO: it documents that no transition leads back to NONE.
const _: Next = NO;

/// Linux's MAXACKWINCONST: the least ack window accepted.
const MIN_ACK_WINDOW: u32 = 66_000;
/// Marks an unknown window scale in [`TcpTracking::scales`].
const NO_SCALE: u8 = 0xF;
const SEEN_ORIGINAL: u8 = 1;
const SEEN_REPLY: u8 = 2;
const LIBERAL: u8 = 4;
/// The connection went through SYN_SENT2 (Linux's `IP_CT_TCP_SIMULTANEOUS_OPEN`).
const SIMULTANEOUS_OPEN: u8 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Window {
    end: u32,
    max_end: u32,
    max_window: u32,
}

/// Per-connection TCP state: the state plus both directions' windows (28 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct TcpTracking {
    windows: [Window; 2],
    /// Window scale per direction: low nibble original, high nibble reply.
    scales: u8,
    seen: u8,
    /// The [`TcpState`] as its number: any byte is a valid value, so an
    /// entry read from a state file needs no decoding (a byte naming no
    /// state reads as [`TcpState::Close`]).
    state: u8,
}

impl TcpTracking {
    /// A connection nothing was seen of.
    pub(super) const NEW: TcpTracking = TcpTracking {
        windows: [Window {
            end: 0,
            max_end: 0,
            max_window: 0,
        }; 2],
        scales: NO_SCALE | (NO_SCALE << 4),
        seen: 0,
        state: TcpState::None as u8,
    };

    /// The connection's state.
    #[inline]
    pub(super) fn state(&self) -> TcpState {
        TcpState::from_number(self.state)
    }
}

impl Default for TcpTracking {
    fn default() -> Self {
        TcpTracking::NEW
    }
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

impl TcpTracking {
    /// Runs `seg`, sent in direction `dir`, through the state machine and the
    /// window check; returns the new state, or why nothing changed.
    pub(super) fn track(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
    ) -> Result<TcpState, TcpReject> {
        // Most segments: an ACK (no SYN, FIN or RST) of an established
        // connection, which the table keeps established in both directions.
        const CONTROL: u8 = FLAG_SYN | FLAG_FIN | FLAG_RST | FLAG_ACK;
        if self.state == TcpState::Established as u8 && seg.flags & CONTROL == FLAG_ACK {
            self.track_window(dir, seg)?;
            return Ok(TcpState::Established);
        }
        self.track_by_table(dir, seg)
    }

    /// [`track`](Self::track) through the transition table, for any state
    /// and flags.
    fn track_by_table(&mut self, dir: Direction, seg: &TcpSegment) -> Result<TcpState, TcpReject> {
        let index = flag_index(seg.flags).ok_or(TcpReject::InvalidTransition)?;
        let state = self.state();
        let mut next = match TRANSITIONS[dir as usize][index][state as usize] {
            Next::To(s) => s,
            Next::Ignore => return Err(TcpReject::Ignored),
            Next::Invalid => return Err(TcpReject::InvalidTransition),
        };
        // The table alone cannot finish a simultaneous open: there, either
        // side's ACK completes the handshake, as in Linux.
        if next == TcpState::SynRecv
            && self.seen & SIMULTANEOUS_OPEN != 0
            && index == 3
            && state == TcpState::SynRecv
        {
            next = TcpState::Established;
        }
        let reopen =
            next == TcpState::SynSent && matches!(state, TcpState::TimeWait | TcpState::Close);
        if reopen {
            // Port reuse: a new connection on the same tuple starts from scratch.
            let mut fresh = TcpTracking::default();
            fresh.track_window(Direction::Original, seg)?;
            *self = fresh;
        } else {
            if state == TcpState::None && !seg.has(FLAG_SYN) {
                self.seen |= LIBERAL;
            }
            self.track_window(dir, seg)?;
        }
        if next == TcpState::SynSent2 {
            self.seen |= SIMULTANEOUS_OPEN;
        }
        self.state = next as u8;
        Ok(next)
    }

    /// Whether a segment from the reply direction has been seen.
    pub(super) fn seen_reply(&self) -> bool {
        self.seen & SEEN_REPLY != 0
    }

    fn scale(&self, dir: Direction) -> u32 {
        let (orig, reply) = (self.scales & 0xF, self.scales >> 4);
        if orig == NO_SCALE || reply == NO_SCALE {
            return 0;
        }
        u32::from(if dir == Direction::Original {
            orig
        } else {
            reply
        })
    }

    fn track_window(&mut self, dir: Direction, seg: &TcpSegment) -> Result<(), TcpReject> {
        let (s, r) = (dir as usize, dir.opposite() as usize);
        let seen_bit = |d: usize| if d == 0 { SEEN_ORIGINAL } else { SEEN_REPLY };
        let syn = seg.has(FLAG_SYN);
        let window = if syn {
            u32::from(seg.window)
        } else {
            u32::from(seg.window) << self.scale(dir)
        };
        let end = seg
            .seq
            .wrapping_add(seg.payload_len)
            .wrapping_add(u32::from(syn))
            .wrapping_add(u32::from(seg.has(FLAG_FIN)));
        if syn {
            let nibble = seg.window_scale.unwrap_or(NO_SCALE);
            let shift = if s == 0 { 0 } else { 4 };
            self.scales = (self.scales & !(0xF << shift)) | (nibble << shift);
        }
        if self.seen & seen_bit(s) == 0 {
            self.seen |= seen_bit(s);
            self.windows[s] = Window {
                end,
                max_end: end,
                max_window: window.max(1),
            };
        }
        let ack = if seg.has(FLAG_ACK) {
            seg.ack
        } else {
            self.windows[r].end
        };
        if self.seen & seen_bit(r) != 0 && self.seen & LIBERAL == 0 {
            let (sender, receiver) = (self.windows[s], self.windows[r]);
            let max_ack_window = sender.max_window.max(MIN_ACK_WINDOW);
            let in_window = !after(seg.seq, sender.max_end)
                && !before(end, sender.end.wrapping_sub(receiver.max_window))
                && !after(ack, receiver.end)
                && !before(ack, receiver.end.wrapping_sub(max_ack_window));
            if !in_window {
                return Err(TcpReject::OutOfWindow);
            }
        }
        let sender = &mut self.windows[s];
        if after(end, sender.end) {
            sender.end = end;
        }
        if after(end, sender.max_end) {
            sender.max_end = end;
        }
        sender.max_window = sender.max_window.max(window);
        if seg.has(FLAG_ACK) {
            let receiver = &mut self.windows[r];
            let limit = ack.wrapping_add(window.max(1));
            if after(limit, receiver.max_end) {
                receiver.max_end = limit;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};

    const SYN: u8 = FLAG_SYN;
    const SYNACK: u8 = FLAG_SYN | FLAG_ACK;
    const ACK: u8 = FLAG_ACK;
    const FIN: u8 = FLAG_FIN | FLAG_ACK;
    const RST: u8 = FLAG_RST;

    /// A connection with a sequence-number model for both sides, so every
    /// segment it makes is in window.
    struct Conn {
        t: TcpTracking,
        next_seq: [u32; 2],
    }

    impl Conn {
        fn new() -> Conn {
            Conn {
                t: TcpTracking::default(),
                next_seq: [1000, 900_000],
            }
        }

        fn seg(&self, dir: Direction, flags: u8, len: u32) -> TcpSegment {
            TcpSegment {
                flags,
                seq: self.next_seq[dir as usize],
                ack: self.next_seq[dir.opposite() as usize],
                window: 65535,
                payload_len: len,
                window_scale: (flags & SYN != 0).then_some(7),
            }
        }

        fn send(&mut self, dir: Direction, flags: u8, len: u32) -> Result<TcpState, TcpReject> {
            let seg = self.seg(dir, flags, len);
            let r = self.t.track(dir, &seg);
            if r.is_ok() {
                let extra = u32::from(flags & (SYN | FLAG_FIN) != 0);
                self.next_seq[dir as usize] = self.next_seq[dir as usize].wrapping_add(len + extra);
            }
            r
        }

        fn established() -> Conn {
            let mut c = Conn::new();
            c.send(O, SYN, 0).unwrap();
            c.send(R, SYNACK, 0).unwrap();
            assert_eq!(c.send(O, ACK, 0), Ok(TcpState::Established));
            c
        }

        /// A connection driven (by in-window segments) into `state`.
        fn in_state(state: TcpState) -> Conn {
            let mut c = Conn::new();
            let path: &[(Direction, u8)] = match state {
                TcpState::None => &[],
                TcpState::SynSent => &[(O, SYN)],
                TcpState::SynRecv => &[(O, SYN), (R, SYNACK)],
                TcpState::Established => &[(O, SYN), (R, SYNACK), (O, ACK)],
                TcpState::FinWait => &[(O, SYN), (R, SYNACK), (O, ACK), (O, FIN)],
                TcpState::CloseWait => &[(O, SYN), (R, SYNACK), (O, ACK), (O, FIN), (R, ACK)],
                TcpState::LastAck => &[(O, SYN), (R, SYNACK), (O, ACK), (O, FIN), (R, FIN)],
                TcpState::TimeWait => &[
                    (O, SYN),
                    (R, SYNACK),
                    (O, ACK),
                    (O, FIN),
                    (R, FIN),
                    (O, ACK),
                ],
                TcpState::Close => &[(O, SYN), (R, SYNACK), (O, ACK), (R, RST)],
                TcpState::SynSent2 => &[(O, SYN), (R, SYN)],
            };
            for &(dir, flags) in path {
                c.send(dir, flags, 0).unwrap();
            }
            assert_eq!(c.t.state(), state);
            c
        }
    }

    #[test]
    fn every_transition_matches_the_table() {
        use TcpState as T;
        let flags = [SYN, SYNACK, FIN, ACK, RST];
        // (direction, flags index) → expected next state per column of TcpState::ALL;
        // None = rejected (ignored or invalid), state unchanged.
        let n = None;
        #[rustfmt::skip]
        let expected: [[[Option<T>; 10]; 5]; 2] = [
            [
                [Some(T::SynSent), Some(T::SynSent), n, n, n, n, n, Some(T::SynSent), Some(T::SynSent), Some(T::SynSent2)],
                [n, n, Some(T::SynRecv), n, n, n, n, n, n, Some(T::SynRecv)],
                [n, n, Some(T::FinWait), Some(T::FinWait), Some(T::LastAck), Some(T::LastAck), Some(T::LastAck), Some(T::TimeWait), Some(T::Close), n],
                [Some(T::Established), n, Some(T::Established), Some(T::Established), Some(T::CloseWait), Some(T::CloseWait), Some(T::TimeWait), Some(T::TimeWait), Some(T::Close), n],
                [n, Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close)],
            ],
            [
                [n, Some(T::SynSent2), n, n, n, n, n, n, n, Some(T::SynSent2)],
                [n, Some(T::SynRecv), n, n, n, n, n, n, n, Some(T::SynRecv)],
                [n, n, Some(T::FinWait), Some(T::FinWait), Some(T::LastAck), Some(T::LastAck), Some(T::LastAck), Some(T::TimeWait), Some(T::Close), n],
                [n, n, Some(T::SynRecv), Some(T::Established), Some(T::CloseWait), Some(T::CloseWait), Some(T::TimeWait), Some(T::TimeWait), Some(T::Close), n],
                [n, Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close), Some(T::Close)],
            ],
        ];
        for (d, dir) in [O, R].into_iter().enumerate() {
            for (f, &fl) in flags.iter().enumerate() {
                for (s, &state) in TcpState::ALL.iter().enumerate() {
                    let mut c = Conn::in_state(state);
                    let got = c.send(dir, fl, 0);
                    let want = expected[d][f][s];
                    match want {
                        Some(next) => {
                            assert_eq!(got, Ok(next), "{dir:?} flags {fl:#x} in {state:?}");
                        }
                        None => {
                            assert!(got.is_err(), "{dir:?} flags {fl:#x} in {state:?}: {got:?}");
                            assert_eq!(c.t.state(), state);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn simultaneous_open_is_tracked_in_either_order() {
        // Both sides send a SYN, then both answer with a SYN-ACK that repeats
        // their SYN (RFC 793 figure 8); Linux passes them through SYN_SENT2.
        for originator_answers_first in [true, false] {
            let mut c = Conn::new();
            assert_eq!(c.send(O, SYN, 0), Ok(TcpState::SynSent));
            let crossing = c.send(R, SYN, 0);
            assert_eq!(crossing.map(TcpState::name), Ok("SYN_SENT2"));
            let syn_ack = |dir: Direction| TcpSegment {
                seq: c.next_seq[dir as usize].wrapping_sub(1),
                ..c.seg(dir, SYNACK, 0)
            };
            let (first, second) = if originator_answers_first {
                (O, R)
            } else {
                (R, O)
            };
            let (first_seg, second_seg) = (syn_ack(first), syn_ack(second));
            assert_eq!(c.t.track(first, &first_seg), Ok(TcpState::SynRecv));
            let late = c.t.track(second, &second_seg);
            assert!(
                matches!(late, Ok(TcpState::SynRecv) | Err(TcpReject::Ignored)),
                "second SYN-ACK, originator first: {originator_answers_first}: {late:?}"
            );
            // Data from either side then establishes the connection.
            assert_eq!(c.send(second, ACK, 100), Ok(TcpState::Established));
            assert_eq!(c.send(first, ACK, 100), Ok(TcpState::Established));
            assert!(c.t.seen_reply());
        }
    }

    #[test]
    fn segment_without_flags_is_invalid() {
        let mut c = Conn::established();
        assert_eq!(c.send(O, 0, 10), Err(TcpReject::InvalidTransition));
    }

    #[test]
    fn full_close_from_originator() {
        let mut c = Conn::established();
        assert_eq!(c.send(O, ACK, 100), Ok(TcpState::Established));
        assert_eq!(c.send(R, ACK, 1000), Ok(TcpState::Established));
        assert_eq!(c.send(O, FIN, 0), Ok(TcpState::FinWait));
        assert_eq!(c.send(R, ACK, 0), Ok(TcpState::CloseWait));
        assert_eq!(c.send(R, FIN, 0), Ok(TcpState::LastAck));
        assert_eq!(c.send(O, ACK, 0), Ok(TcpState::TimeWait));
    }

    #[test]
    fn simultaneous_close() {
        let mut c = Conn::established();
        let fin_o = c.seg(O, FIN, 0);
        let fin_r = c.seg(R, FIN, 0);
        // Both FINs cross on the wire; each acks only what it had seen.
        assert_eq!(c.t.track(O, &fin_o), Ok(TcpState::FinWait));
        assert_eq!(c.t.track(R, &fin_r), Ok(TcpState::LastAck));
        c.next_seq[0] += 1;
        c.next_seq[1] += 1;
        assert_eq!(c.send(O, ACK, 0), Ok(TcpState::TimeWait));
        assert_eq!(c.send(R, ACK, 0), Ok(TcpState::TimeWait));
    }

    #[test]
    fn rst_closes_every_state() {
        for &state in &TcpState::ALL[1..] {
            for dir in [O, R] {
                let mut c = Conn::in_state(state);
                if state == TcpState::SynSent && dir == R {
                    // The responder has sent nothing yet; its RST acks the SYN.
                    let seg = TcpSegment {
                        flags: RST | ACK,
                        seq: 0,
                        ack: c.next_seq[0],
                        ..TcpSegment::default()
                    };
                    assert_eq!(c.t.track(R, &seg), Ok(TcpState::Close));
                    continue;
                }
                assert_eq!(
                    c.send(dir, RST, 0),
                    Ok(TcpState::Close),
                    "{dir:?} in {state:?}"
                );
            }
        }
    }

    #[test]
    fn out_of_window_segments_are_ignored() {
        let mut c = Conn::established();
        // Far beyond what the peer allowed.
        let mut seg = c.seg(O, ACK, 100);
        seg.seq = seg.seq.wrapping_add(50_000_000);
        assert_eq!(c.t.track(O, &seg), Err(TcpReject::OutOfWindow));
        // An RST far out of window must not tear the connection down.
        let mut rst = c.seg(R, RST, 0);
        rst.seq = rst.seq.wrapping_sub(100_000_000);
        assert_eq!(c.t.track(R, &rst), Err(TcpReject::OutOfWindow));
        // A FIN acking data never sent.
        let mut fin = c.seg(R, FIN, 0);
        fin.ack = fin.ack.wrapping_add(10_000_000);
        assert_eq!(c.t.track(R, &fin), Err(TcpReject::OutOfWindow));
        assert_eq!(c.t.state(), TcpState::Established);
        // In-window traffic still flows, including across sequence wrap.
        assert_eq!(c.send(O, ACK, 1400), Ok(TcpState::Established));
    }

    #[test]
    fn window_scale_allows_large_windows() {
        let mut c = Conn::established();
        // Peer window is 65535 << 7 ≈ 8 MB: 4 MB in flight is fine.
        for _ in 0..3000 {
            assert_eq!(c.send(O, ACK, 1400), Ok(TcpState::Established));
            // Reply acks nothing new (stale ack of seq), still in window.
            let mut ack = c.seg(R, ACK, 0);
            ack.ack = ack.ack.wrapping_sub(1400 * 10).max(1000);
            let _ = c.t.track(R, &ack);
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut c = Conn::new();
        c.next_seq = [u32::MAX - 500, u32::MAX - 100];
        c.send(O, SYN, 0).unwrap();
        c.send(R, SYNACK, 0).unwrap();
        c.send(O, ACK, 0).unwrap();
        for _ in 0..10 {
            assert_eq!(c.send(O, ACK, 1000), Ok(TcpState::Established));
            assert_eq!(c.send(R, ACK, 1000), Ok(TcpState::Established));
        }
    }

    #[test]
    fn midstream_pickup_is_liberal() {
        let mut t = TcpTracking::default();
        let seg = TcpSegment {
            flags: ACK,
            seq: 5,
            ack: 7,
            window: 10,
            payload_len: 100,
            window_scale: None,
        };
        assert!(seg.can_open());
        assert_eq!(t.track(O, &seg), Ok(TcpState::Established));
        let far = TcpSegment {
            seq: 9_000_000,
            ack: 5_000_000,
            ..seg
        };
        assert_eq!(t.track(R, &far), Ok(TcpState::Established));
        assert!(t.seen_reply());
    }

    #[test]
    fn window_scale_option_parses() {
        assert_eq!(window_scale_option(&[2, 4, 5, 180, 1, 3, 3, 7]), Some(7));
        assert_eq!(window_scale_option(&[1, 1, 3, 3, 20]), Some(14));
        assert_eq!(window_scale_option(&[2, 4, 5, 180]), None);
        assert_eq!(window_scale_option(&[3]), None);
        assert_eq!(window_scale_option(&[2, 0, 3, 3, 1]), None);
        assert_eq!(window_scale_option(&[0, 3, 3, 1]), None);
    }

    #[test]
    fn from_packet_reads_fields() {
        // SYN with MSS and wscale 7 options.
        let mut bytes = [0u8; 28];
        bytes[4..8].copy_from_slice(&1000u32.to_be_bytes());
        bytes[12] = 7 << 4;
        bytes[13] = SYN;
        bytes[14..16].copy_from_slice(&64240u16.to_be_bytes());
        bytes[20..28].copy_from_slice(&[2, 4, 5, 180, 1, 3, 3, 7]);
        let tcp = TcpPacket::new_checked(&bytes[..]).unwrap();
        let seg = TcpSegment::from_packet(&tcp);
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.window, 64240);
        assert_eq!(seg.window_scale, Some(7));
        assert_eq!(seg.payload_len, 0);
        assert!(seg.can_open());
    }
    #[test]
    fn the_established_ack_shortcut_is_the_table_path() {
        // Every flag byte, both directions, in and out of window: the
        // same result and the same tracking state as the table path.
        let base = Conn::established();
        for flags in 0..=u8::MAX {
            for dir in [O, R] {
                for shift in [0u32, 1 << 20, 1 << 31] {
                    let mut seg = base.seg(dir, flags, 100);
                    seg.seq = seg.seq.wrapping_add(shift);
                    let (mut fast, mut table) = (base.t, base.t);
                    let got = fast.track(dir, &seg);
                    let want = table.track_by_table(dir, &seg);
                    assert_eq!(got, want, "flags {flags:#04x} {dir:?} +{shift}");
                    assert_eq!(fast, table, "flags {flags:#04x} {dir:?} +{shift}");
                }
            }
        }
    }
}
