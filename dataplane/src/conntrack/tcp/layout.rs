//! How a [`TcpTracking`] lies in memory, read back from a state file.

use super::{TcpState, TcpTracking, Window};

impl TcpTracking {
    /// Offsets of the fields [`decode`](Self::decode) reads, for the state
    /// file's layout fingerprint.
    pub(in crate::conntrack) fn layout() -> [usize; 7] {
        use core::mem::offset_of;
        [
            size_of::<TcpTracking>(),
            offset_of!(TcpTracking, windows),
            offset_of!(Window, end),
            offset_of!(Window, max_end),
            offset_of!(Window, max_window),
            offset_of!(TcpTracking, scales) | offset_of!(TcpTracking, seen) << 8,
            offset_of!(TcpTracking, state),
        ]
    }

    /// The tracking laid out in `bytes` as this build lays it out (a state
    /// file); `None` if its state byte names no state.
    pub(in crate::conntrack) fn decode(bytes: &[u8]) -> Option<TcpTracking> {
        use core::mem::offset_of;
        let byte = |at: usize| bytes.get(at).copied();
        let word = |at: usize| {
            let b = bytes.get(at..at + 4)?;
            Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let window = |i: usize| {
            let at = offset_of!(TcpTracking, windows) + i * size_of::<Window>();
            Some(Window {
                end: word(at + offset_of!(Window, end))?,
                max_end: word(at + offset_of!(Window, max_end))?,
                max_window: word(at + offset_of!(Window, max_window))?,
            })
        };
        let state = *TcpState::ALL.get(usize::from(byte(offset_of!(TcpTracking, state))?))?;
        Some(TcpTracking {
            windows: [window(0)?, window(1)?],
            scales: byte(offset_of!(TcpTracking, scales))?,
            seen: byte(offset_of!(TcpTracking, seen))?,
            state,
        })
    }
}
