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
    /// `slots[0]` as this process last wrote or read it (read again by
    /// [`reload`](Self::reload): another process may have written it).
    len: u32,
}

impl FreeList {
    /// The list kept in `slots`, as they hold it (see [`reload`](Self::reload)).
    pub(super) fn over(slots: HugeChunk<u32>) -> FreeList {
        let mut list = FreeList { slots, len: 0 };
        list.reload();
        list
    }

    /// Takes the length the slots keep (a previous process wrote it);
    /// `false` if it is beyond their room (damaged: it reads as an empty
    /// list).
    pub(super) fn reload(&mut self) -> bool {
        let kept = self.slots.first().copied().unwrap_or(0);
        let sound = (kept as usize) < self.slots.len();
        self.len = if sound { kept } else { 0 };
        sound
    }

    /// Ids on the list.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// No id on the list.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id pushed last.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<u32> {
        let len = self.len.checked_sub(1)?;
        let id = *self.slots.get(self.len as usize)?;
        self.set_len(len);
        Some(id)
    }

    /// Puts `id` on the list (nothing if it is full, which a table that
    /// frees only what it handed out never makes it).
    #[inline]
    pub(super) fn push(&mut self, id: u32) {
        let len = self.len + 1;
        if let Some(slot) = self.slots.get_mut(len as usize) {
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

    #[inline]
    fn set_len(&mut self, len: u32) {
        self.len = len;
        if let Some(first) = self.slots.first_mut() {
            *first = len;
        }
    }
}
