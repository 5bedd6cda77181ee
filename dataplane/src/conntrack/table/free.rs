//! The free list: a stack of entry ids in memory that may be a state
//! file's part, its length in the first slot, so that a process taking
//! over from one that stopped cleanly finds it ready instead of scanning
//! every entry for it.

use crate::mem::hugemem::HugeChunk;

/// Slots a free list of `capacity` ids takes (the length, then the ids;
/// rounded to whole cache lines).
pub const fn slots_for(capacity: usize) -> usize {
    (capacity + 1).next_multiple_of(16)
}

/// Ids of free entries, handed out last in, first out.
#[derive(Debug)]
pub(super) struct FreeList {
    /// `[0]`: how many ids follow; `[1..=len]`: the ids.
    slots: HugeChunk<u32>,
}

impl FreeList {
    /// The list kept in `slots`, as they hold it (its length checked
    /// against their room: a longer one reads as empty until refilled).
    pub(super) fn over(slots: HugeChunk<u32>) -> FreeList {
        FreeList { slots }
    }

    /// Ids on the list.
    #[inline]
    pub(super) fn len(&self) -> usize {
        let len = self.slots.first().map_or(0, |&n| n as usize);
        if len < self.slots.len() { len } else { 0 }
    }

    /// No id on the list.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id pushed last.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<u32> {
        let len = self.len();
        let id = *self.slots.get(len).filter(|_| len > 0)?;
        self.set_len(len - 1);
        Some(id)
    }

    /// Puts `id` on the list (nothing if it is full, which a table that
    /// frees only what it handed out never makes it).
    #[inline]
    pub(super) fn push(&mut self, id: u32) {
        let len = self.len() + 1;
        if let Some(slot) = self.slots.get_mut(len) {
            *slot = id;
            self.set_len(len);
        }
    }

    /// Empties the list.
    pub(super) fn clear(&mut self) {
        self.set_len(0);
    }

    /// Ids the list has room for.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len().saturating_sub(1)
    }

    /// Whether the length the list keeps fits its room (a damaged one
    /// reads as an empty list).
    pub(super) fn is_sound(&self) -> bool {
        self.slots
            .first()
            .is_some_and(|&n| (n as usize) < self.slots.len())
    }

    #[inline]
    fn set_len(&mut self, len: usize) {
        if let Some(first) = self.slots.first_mut() {
            *first = len as u32;
        }
    }
}
