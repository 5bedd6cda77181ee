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

    /// Whether the state byte names a state (a state file's entry whose
    /// byte does not was damaged).
    pub(in crate::conntrack) fn state_is_known(&self) -> bool {
        usize::from(self.state) < TcpState::ALL.len()
    }
}
