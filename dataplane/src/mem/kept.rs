//! Small tables kept in a state file part beside the big ones: records of
//! a key and two words ([`KeptRecords`], the MAC and neighbour tables) and
//! one blob written whole ([`KeptBlob`], the published counters).
//!
//! Both are written on the control or learning path, never per packet,
//! and both survive a process killed in the middle of a write: a record
//! carries a check word written last (a torn record fails its check and
//! is left out when the next process attaches), and the blob has two
//! buffers, the one not current written first and then made current.
//!
//! ```
//! use podswitch_dataplane::mem::{hugemem, kept::KeptRecords};
//!
//! let words = hugemem::chunks(1, KeptRecords::words_for(8), || Default::default()).pop().unwrap();
//! let (mut records, found) = KeptRecords::attach(words, |_, _| true);
//! assert!(found.is_empty());
//! assert!(records.put(7, [1, 2]));
//! records.remove(7);
//! ```

use core::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashMap;

use super::hugemem::HugeChunk;

/// Words of one record: key, two values, check.
const RECORD_WORDS: usize = 4;

/// The check word of a record: never 0 (an empty slot).
fn check(key: u64, values: [u64; 2]) -> u64 {
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    mix(mix(mix(0x5053_5752_4543_4f52, key), values[0]), values[1]) | 1
}

/// Records of a key and two words in a part of a state file, one slot per key.
#[derive(Debug)]
pub struct KeptRecords {
    words: HugeChunk<AtomicU64>,
    slot_of: HashMap<u64, u32, foldhash::fast::FixedState>,
    free: Vec<u32>,
}

impl KeptRecords {
    /// Words a part of `records` records takes.
    pub const fn words_for(records: usize) -> usize {
        records * RECORD_WORDS
    }

    /// Takes over `words`: returns the records it holds whose check
    /// matches and that `valid(key, values)` accepts (each key once);
    /// every other slot is emptied.
    pub fn attach(
        words: HugeChunk<AtomicU64>,
        valid: impl Fn(u64, [u64; 2]) -> bool,
    ) -> (KeptRecords, Vec<(u64, [u64; 2])>) {
        let slots = words.len() / RECORD_WORDS;
        let mut kept = KeptRecords {
            words,
            slot_of: HashMap::default(),
            free: Vec::with_capacity(slots),
        };
        let mut found = Vec::new();
        for slot in (0..slots).rev() {
            let at = slot * RECORD_WORDS;
            let word = |i: usize| kept.words[at + i].load(Ordering::Acquire);
            let (key, values, sum) = (word(0), [word(1), word(2)], word(3));
            let sound = sum != 0 && sum == check(key, values) && valid(key, values);
            if sound && !kept.slot_of.contains_key(&key) {
                kept.slot_of.insert(key, slot as u32);
                found.push((key, values));
            } else {
                if sum != 0 {
                    kept.words[at + 3].store(0, Ordering::Release);
                }
                kept.free.push(slot as u32);
            }
        }
        (kept, found)
    }

    /// Writes `key`'s record; `false` when every slot is taken (the record
    /// is then not kept).
    pub fn put(&mut self, key: u64, values: [u64; 2]) -> bool {
        let slot = match self.slot_of.get(&key) {
            Some(&slot) => slot,
            None => match self.free.pop() {
                Some(slot) => {
                    self.slot_of.insert(key, slot);
                    slot
                }
                None => return false,
            },
        };
        let at = slot as usize * RECORD_WORDS;
        // The check word goes first (to 0) and last: a record cut short by
        // a kill fails its check.
        self.words[at + 3].store(0, Ordering::Release);
        self.words[at].store(key, Ordering::Relaxed);
        self.words[at + 1].store(values[0], Ordering::Relaxed);
        self.words[at + 2].store(values[1], Ordering::Relaxed);
        self.words[at + 3].store(check(key, values), Ordering::Release);
        true
    }

    /// Empties `key`'s slot, if it has one.
    pub fn remove(&mut self, key: u64) {
        if let Some(slot) = self.slot_of.remove(&key) {
            self.words[slot as usize * RECORD_WORDS + 3].store(0, Ordering::Release);
            self.free.push(slot);
        }
    }

    /// Records kept.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// True when no record is kept.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }
}

/// Header words of a [`KeptBlob`]: the current buffer (1 or 2; 0: none).
const BLOB_HEADER: usize = 1;
/// Header words of each buffer: length in bytes, checksum.
const BUFFER_HEADER: usize = 2;

fn blob_checksum(len: u64, words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64 ^ len, |h, &w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17)
    })
}

/// One blob of bytes in a part of a state file, replaced whole.
#[derive(Debug)]
pub struct KeptBlob {
    words: HugeChunk<AtomicU64>,
}

impl KeptBlob {
    /// Takes over `words` (zeros: no blob yet).
    pub fn attach(words: HugeChunk<AtomicU64>) -> KeptBlob {
        KeptBlob { words }
    }

    /// Most bytes a blob may have.
    pub fn capacity(&self) -> usize {
        self.buffer_words().saturating_sub(BUFFER_HEADER) * 8
    }

    fn buffer_words(&self) -> usize {
        self.words.len().saturating_sub(BLOB_HEADER) / 2
    }

    fn buffer(&self, which: usize) -> &[AtomicU64] {
        let n = self.buffer_words();
        let at = BLOB_HEADER + which * n;
        &self.words[at..at + n]
    }

    /// The blob last stored whole, if any.
    pub fn load(&self) -> Option<Vec<u8>> {
        let which = match self.words.first()?.load(Ordering::Acquire) {
            1 => 0,
            2 => 1,
            _ => return None,
        };
        let buffer = self.buffer(which);
        let len = usize::try_from(buffer.first()?.load(Ordering::Relaxed)).ok()?;
        let data = buffer.get(BUFFER_HEADER..BUFFER_HEADER + len.div_ceil(8))?;
        let words: Vec<u64> = data.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        if buffer[1].load(Ordering::Relaxed) != blob_checksum(len as u64, &words) {
            return None;
        }
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(len);
        Some(bytes)
    }

    /// Stores `bytes` as the blob; `false` (nothing changed) if longer
    /// than [`KeptBlob::capacity`].
    pub fn store(&self, bytes: &[u8]) -> bool {
        if bytes.len() > self.capacity() {
            return false;
        }
        let next = match self.words[0].load(Ordering::Acquire) {
            1 => 1,
            _ => 0,
        };
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        let buffer = self.buffer(next);
        buffer[0].store(bytes.len() as u64, Ordering::Relaxed);
        buffer[1].store(blob_checksum(bytes.len() as u64, &words), Ordering::Relaxed);
        for (slot, w) in buffer[BUFFER_HEADER..].iter().zip(&words) {
            slot.store(*w, Ordering::Relaxed);
        }
        self.words[0].store(next as u64 + 1, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::hugemem;

    fn part(words: usize) -> HugeChunk<AtomicU64> {
        hugemem::chunks(1, words, AtomicU64::default).pop().unwrap()
    }

    /// The same memory seen again, as the next process sees the file.
    fn again(words: &HugeChunk<AtomicU64>) -> HugeChunk<AtomicU64> {
        let copy = part(words.len());
        for (a, b) in copy.iter().zip(words.iter()) {
            a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        copy
    }

    #[test]
    fn records_come_back_and_torn_ones_do_not() {
        let (mut r, found) = KeptRecords::attach(part(KeptRecords::words_for(4)), |_, _| true);
        assert!(found.is_empty());
        assert!(r.put(10, [1, 2]));
        assert!(r.put(11, [3, 4]));
        assert!(r.put(10, [5, 6]));
        assert!(r.put(12, [0, 0]));
        r.remove(12);
        assert!(r.put(13, [7, 8]));
        assert!(r.put(14, [9, 9]));
        assert!(!r.put(15, [1, 1]), "four slots");
        assert_eq!(r.len(), 4);
        // A kill in the middle of writing 14's record again.
        let slot = r.slot_of[&14] as usize * RECORD_WORDS;
        r.words[slot + 1].store(99, Ordering::Relaxed);
        let (mut r2, mut found) = KeptRecords::attach(again(&r.words), |k, _| k != 13);
        found.sort();
        assert_eq!(found, vec![(10, [5, 6]), (11, [3, 4])]);
        assert_eq!(r2.len(), 2);
        // The refused and the torn slots are free again.
        assert!(r2.put(20, [1, 1]) && r2.put(21, [1, 1]) && !r2.put(22, [1, 1]));
    }

    #[test]
    fn a_blob_is_replaced_whole() {
        let blob = KeptBlob::attach(part(64));
        assert_eq!(blob.load(), None);
        assert_eq!(blob.capacity(), (31 - 2) * 8);
        assert!(blob.store(b"first"));
        assert!(blob.store(b"the second one"));
        assert_eq!(blob.load().as_deref(), Some(&b"the second one"[..]));
        assert!(!blob.store(&[0u8; 1000]));
        // Torn: a kill while the other buffer was half written leaves the current one.
        let copy = KeptBlob::attach(again(&blob.words));
        copy.buffer(0)[2].store(1, Ordering::Relaxed);
        assert_eq!(copy.load().as_deref(), Some(&b"the second one"[..]));
        // Damaged current buffer: no blob rather than a wrong one.
        copy.buffer(1)[2].store(1, Ordering::Relaxed);
        assert_eq!(copy.load(), None);
        assert!(KeptBlob::attach(part(64)).store(b""));
    }
}
