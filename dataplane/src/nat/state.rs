//! The state that outlives the process: connection tracking (with the
//! NAT bindings) and ClientIP affinity live in one file under the run
//! directory ([`crate::mem::statefile`]), so a restarted or upgraded
//! daemon attaches them before it forwards its first packet and the
//! connections through services go on: also those whose endpoint sends
//! first, which without the entry would no longer be translated back.
//! The same file keeps the learned MACs, the resolved neighbours and the
//! published counters ([`KeptParts`]: this module lays them out, the
//! pipeline and the control plane read and write them).
//!
//! Layout (all parts 2 MiB aligned, so they can sit in huge pages):
//!
//! | part | bytes |
//! |---|---|
//! | header: [`HEADER_WORDS`] `u64` words | 4096 |
//! | conntrack entries, shard after shard | shards × per shard × 64 |
//! | conntrack index, shard after shard | shards × slots × 8 |
//! | affinity slots, shard after shard | 16 × slots × 32 |
//! | MAC records ([`KEPT_MACS`]), neighbour records ([`KEPT_NEIGHBOURS`]), counters blob | 2 MiB |
//! | conntrack free lists, shard after shard | shards × [`free_list_slots`] × 4 |
//! | per-source counts | [`SOURCE_COUNTERS`] × 4 |
//!
//! Layout version 1 ended after the affinity slots, version 2 after the
//! MACs, neighbours and counters; a sound file of either is extended by
//! the parts it lacks (empty) and attached, so an upgrade from a build
//! that wrote it keeps its connections.
//!
//! Opening is two steps, so that a process taking over from a running one
//! ([`prepare`] while the old one still forwards, [`StateHeader::settle`]
//! once it stopped) does the long part outside the forwarding gap:
//! `prepare` maps the file and checks the header, every index slot and
//! every entry (reading only: the old process may still be writing them);
//! `settle` takes the free lists and per-source counts as the file holds
//! them when the previous process stopped cleanly and kept them there (a
//! few microseconds), and otherwise (killed, or an older layout) makes
//! them from the entries, which takes a pass over all of them.
//!
//! The header holds a magic number, the layout version, the file length,
//! a fingerprint of how this build lays an entry out, the table shape, the
//! index hash seed, the boot the clock counts from and a checksum of all of
//! these. The next process reads the file only if all of them match what
//! it would build; otherwise, or when an entry or index slot it finds
//! while attaching is not valid, it discards the file and starts clean
//! ([`StateReport::discarded`] says why). Times in entries are
//! `CLOCK_MONOTONIC` ([`super::monotonic_ns`]), the same for every process
//! of a boot.

use core::sync::atomic::{AtomicU64, Ordering};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use core::sync::atomic::AtomicU32;

use super::affinity::{AffinitySlot, AffinityTable};
use super::shared::SharedConntrack;
use crate::conntrack::{
    ConntrackTable, Entry, KeyHasher, SOURCE_COUNTERS, SourceCounts, Timeouts, free_list_slots,
};
use crate::mem::hugemem::{HUGE_PAGE, HugeChunk};
use crate::mem::kept::{KeptBlob, KeptRecords};
use crate::mem::statefile::StateFile;

/// "PSWSTATE".
const MAGIC: u64 = u64::from_le_bytes(*b"PSWSTATE");
/// Bumped whenever the layout changes in a way the fingerprint misses.
pub const LAYOUT_VERSION: u64 = 3;
/// MAC records the file keeps.
pub const KEPT_MACS: usize = 16 * 1024;
/// Neighbour records the file keeps.
pub const KEPT_NEIGHBOURS: usize = 16 * 1024;
/// Bytes of the part holding the MACs, the neighbours and the counters.
const KEPT_PART: usize = HUGE_PAGE;
/// Words of the header.
pub const HEADER_WORDS: usize = 512;

mod word {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const FILE_LEN: usize = 2;
    pub const FINGERPRINT: usize = 3;
    pub const SHARDS: usize = 4;
    pub const PER_SHARD: usize = 5;
    pub const SLOTS: usize = 6;
    pub const SEED: usize = 7;
    pub const AFFINITY_SLOTS: usize = 8;
    pub const BOOT: usize = 9;
    /// FNV-1a of the words before it.
    pub const CHECKSUM: usize = 10;
    /// [`super::OPEN`] while a process uses the file, [`super::CLOSED`] after a clean stop.
    pub const STATUS: usize = 16;
    /// The process that uses (or last used) the file.
    pub const PID: usize = 17;
    /// The process whose free lists and per-source counts the file holds
    /// (0: none, as in a file extended from an older layout).
    pub const OWNER: usize = 18;
}

const OPEN: u64 = 1;
const CLOSED: u64 = 2;

/// What the tables kept in the state file are sized for.
#[derive(Clone, Debug)]
pub struct StateSpec {
    /// The file (`<run dir>/dataplane.state`).
    pub path: PathBuf,
    /// Conntrack entries in all (`[conntrack] capacity`).
    pub conntrack_capacity: usize,
    /// Conntrack timeouts.
    pub timeouts: Timeouts,
    /// Affinity pairs.
    pub affinity_capacity: usize,
}

/// What opening the state file found.
#[derive(Clone, Debug, Default)]
pub struct StateReport {
    /// The tables live in the file (`false`: it could not be created; they
    /// are in anonymous memory and die with the process).
    pub persistent: bool,
    /// Conntrack entries found in the file and kept.
    pub attached_entries: usize,
    /// The previous process stopped cleanly (SIGTERM), not killed.
    pub clean: bool,
    /// Why a file that was there was not used (then the tables start empty).
    pub discarded: Option<String>,
    /// Why no file could be created, if so.
    pub error: Option<String>,
    /// Time spent opening and attaching.
    pub elapsed: Duration,
    /// The file was of an older layout version and was extended to this one.
    pub upgraded: bool,
    /// The free lists and per-source counts were made from the entries
    /// (the previous process was killed, or wrote an older layout).
    pub rebuilt: bool,
    /// Of [`elapsed`](Self::elapsed), the time [`StateHeader::settle`] took.
    pub settle: Duration,
}

impl StateReport {
    /// Adds what [`StateHeader::settle`] found (a file this process made
    /// holds no entries, so the count is the table's).
    pub fn record(&mut self, settled: Settled) {
        self.clean = settled.clean;
        self.rebuilt = settled.rebuilt;
        self.attached_entries = settled.entries;
        self.settle = settled.elapsed;
        if settled.error.is_some() {
            self.error = settled.error;
        }
    }
}

/// What [`StateHeader::settle`] found.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    /// The previous process stopped cleanly.
    pub clean: bool,
    /// The free lists and per-source counts were made from the entries.
    pub rebuilt: bool,
    /// Conntrack entries the table holds.
    pub entries: usize,
    /// Time it took.
    pub elapsed: Duration,
    /// Why a file this process made could not replace the one before
    /// (it is used all the same, but the next process will not find it).
    pub error: Option<String>,
}

/// The parts of the file for the tables outside NAT, as the file holds
/// them (zeros in a new file).
#[derive(Debug)]
pub struct KeptParts {
    /// Learned MACs ([`KEPT_MACS`] records).
    pub macs: HugeChunk<AtomicU64>,
    /// Resolved neighbours ([`KEPT_NEIGHBOURS`] records).
    pub neighbours: HugeChunk<AtomicU64>,
    /// The counters last published.
    pub counters: KeptBlob,
}

/// The tables, in the state file when it could be had.
#[derive(Debug)]
pub struct KeptTables {
    /// Connection tracking.
    pub conntrack: SharedConntrack,
    /// Session affinity.
    pub affinity: AffinityTable,
    /// The header, to mark a clean stop; `None` without a file.
    pub header: Option<StateHeader>,
    /// The other tables' parts; `None` without a file.
    pub kept: Option<KeptParts>,
    /// What opening found.
    pub report: StateReport,
}

/// The header of the state file in use.
#[derive(Debug)]
pub struct StateHeader {
    words: HugeChunk<AtomicU64>,
    path: PathBuf,
    /// The file was made by this process (nothing to take from it).
    fresh: bool,
    /// Where this process made the file, when it replaces one a running
    /// process may still use: renamed to `path` by [`settle`](Self::settle),
    /// once that process has stopped (a takeover given up before leaves
    /// it its file).
    made_at: Option<PathBuf>,
}

impl StateHeader {
    /// Once the process that used the file before has stopped (at once
    /// when none runs): settles `conntrack`'s free lists and per-source
    /// counts (see the module doc) and marks the file as this process's.
    pub fn settle(&self, conntrack: &SharedConntrack) -> Settled {
        let started = Instant::now();
        let read = |w: usize| self.words[w].load(Ordering::Acquire);
        let clean = !self.fresh && read(word::STATUS) == CLOSED;
        let kept =
            self.fresh || (clean && read(word::PID) != 0 && read(word::OWNER) == read(word::PID));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rebuilt = conntrack.settle(kept, threads);
        let error = self.made_at.as_ref().and_then(|made| {
            let moved = std::fs::rename(made, &self.path);
            moved
                .err()
                .map(|e| format!("cannot rename {} to it: {e}", made.display()))
        });
        let me = u64::from(std::process::id());
        self.words[word::STATUS].store(OPEN, Ordering::Release);
        self.words[word::PID].store(me, Ordering::Release);
        self.words[word::OWNER].store(me, Ordering::Release);
        Settled {
            clean,
            rebuilt,
            entries: conntrack.len(),
            elapsed: started.elapsed(),
            error,
        }
    }

    /// Records that the tables are complete in the file (after the workers
    /// stopped): the next process reads it as a clean stop.
    pub fn mark_closed(&self) {
        self.words[word::STATUS].store(CLOSED, Ordering::Release);
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where each part of the file lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    shards: usize,
    per_shard: usize,
    slots: usize,
    affinity_slots: usize,
    entries_at: usize,
    index_at: usize,
    affinity_at: usize,
    /// Where the MACs, neighbours and counters lie: the end of a version 1 file.
    kept_at: usize,
    /// Slots of a shard's free list.
    free_slots: usize,
    /// Where the free lists lie: the end of a version 2 file.
    free_at: usize,
    sources_at: usize,
    len: usize,
}

impl Layout {
    fn of(spec: &StateSpec) -> Layout {
        let (shards, per_shard) = SharedConntrack::shape(spec.conntrack_capacity);
        let slots = ConntrackTable::index_slots(per_shard);
        let affinity_slots = AffinityTable::slots_per_shard(spec.affinity_capacity);
        let up = |n: usize| n.next_multiple_of(HUGE_PAGE);
        let entries_at = HUGE_PAGE;
        let index_at = up(entries_at + shards * per_shard * size_of::<Entry>());
        let affinity_at = up(index_at + shards * slots * size_of::<AtomicU64>());
        let kept_at =
            up(affinity_at + AffinityTable::SHARDS * affinity_slots * size_of::<AffinitySlot>());
        let free_slots = free_list_slots(per_shard);
        let free_at = kept_at + KEPT_PART;
        let sources_at = up(free_at + shards * free_slots * size_of::<u32>());
        Layout {
            shards,
            per_shard,
            slots,
            affinity_slots,
            entries_at,
            index_at,
            affinity_at,
            kept_at,
            free_slots,
            free_at,
            sources_at,
            len: up(sources_at + SOURCE_COUNTERS * size_of::<AtomicU32>()),
        }
    }

    /// The file's length in layout `version`.
    fn len_of(&self, version: u64) -> usize {
        match version {
            1 => self.kept_at,
            2 => self.free_at,
            _ => self.len,
        }
    }

    /// The header's checked words for this layout, `seed` and layout
    /// `version` (older ones end earlier: [`len_of`](Self::len_of)).
    fn header(&self, seed: u64, version: u64) -> [u64; word::CHECKSUM + 1] {
        let mut h = [0u64; word::CHECKSUM + 1];
        h[word::MAGIC] = MAGIC;
        h[word::VERSION] = version;
        h[word::FILE_LEN] = self.len_of(version) as u64;
        h[word::FINGERPRINT] = Entry::layout_fingerprint();
        h[word::SHARDS] = self.shards as u64;
        h[word::PER_SHARD] = self.per_shard as u64;
        h[word::SLOTS] = self.slots as u64;
        h[word::SEED] = seed;
        h[word::AFFINITY_SLOTS] = self.affinity_slots as u64;
        h[word::BOOT] = boot_id();
        h[word::CHECKSUM] = fnv(&h[..word::CHECKSUM]);
        h
    }
}

fn fnv(words: &[u64]) -> u64 {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// This boot, as a number: a file from before a reboot (a state directory
/// not on tmpfs) holds times of another clock.
fn boot_id() -> u64 {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    fnv(&id.trim().bytes().map(u64::from).collect::<Vec<_>>())
}

/// Opens the tables kept at `spec.path`: attaches what a previous process
/// left there if it is sound and of this layout, else starts them empty in
/// a new file; without a file, in anonymous memory. [`prepare`] and
/// [`StateHeader::settle`] at once: for a file no running process uses.
pub fn open(spec: &StateSpec) -> KeptTables {
    let started = Instant::now();
    let mut tables = prepare(spec);
    if let Some(header) = &tables.header {
        let settled = header.settle(&tables.conntrack);
        tables.report.record(settled);
    }
    tables.report.elapsed = started.elapsed();
    tables
}

/// The first step of opening (see the module doc): the tables over the
/// file at `spec.path`, checked, their free lists and per-source counts
/// not yet settled; or empty ones in a new file (or anonymous memory).
/// Writes nothing a process still using the file writes, except when it
/// extends a file of an older layout (the parts it adds).
pub fn prepare(spec: &StateSpec) -> KeptTables {
    let started = Instant::now();
    let mut tables = match attach(spec) {
        Ok(Some(tables)) => tables,
        Ok(None) => fresh(spec, None),
        Err(reason) => fresh(spec, Some(reason)),
    };
    tables.report.elapsed = started.elapsed();
    tables
}

/// The tables of an existing file; `Ok(None)` if there is no file.
fn attach(spec: &StateSpec) -> Result<Option<KeptTables>, String> {
    let layout = Layout::of(spec);
    let upgraded = upgrade_older(&spec.path, &layout)?;
    let file = match StateFile::open(&spec.path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be mapped: {e}")),
    };
    if file.len() < HEADER_WORDS * 8 {
        return Err(format!("truncated: {} bytes", file.len()));
    }
    let header = take(file.chunks::<AtomicU64>(0, 1, HEADER_WORDS))?;
    let read = |i: usize| header[i].load(Ordering::Acquire);
    let found: Vec<u64> = (0..=word::CHECKSUM).map(read).collect();
    check_header(&found, &layout, LAYOUT_VERSION)?;
    if file.len() != layout.len {
        return Err(format!(
            "truncated: {} bytes, the header says {}",
            file.len(),
            layout.len
        ));
    }
    let tables = build(&file, (&layout, spec.timeouts), header, false)?;
    Ok(Some(KeptTables {
        report: StateReport {
            persistent: true,
            upgraded,
            ..StateReport::default()
        },
        ..tables
    }))
}

/// A sound file of layout version 1 or 2 at `path` is extended by the
/// parts it lacks (zeros: no MACs, neighbours or counters; free lists and
/// per-source counts that [`StateHeader::settle`] makes from the entries)
/// and given a header of this version; `Ok(true)` if so. Any other file
/// is left as it is.
fn upgrade_older(path: &Path, layout: &Layout) -> Result<bool, String> {
    let Ok(file) = std::fs::File::options().read(true).write(true).open(path) else {
        return Ok(false);
    };
    let mut bytes = [0u8; (word::CHECKSUM + 1) * 8];
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return Ok(false);
    }
    let found: Vec<u64> = bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default()))
        .collect();
    let version = found[word::VERSION];
    if found[word::MAGIC] != MAGIC || !(1..LAYOUT_VERSION).contains(&version) {
        return Ok(false);
    }
    check_header(&found, layout, version)?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let want = layout.len_of(version);
    if len != want as u64 {
        return Err(format!("truncated: {len} bytes, the header says {want}"));
    }
    let header = layout.header(found[word::SEED], LAYOUT_VERSION);
    let header: Vec<u8> = header.iter().flat_map(|w| w.to_le_bytes()).collect();
    // No process's free lists are in the parts added (an older build
    // never writes the owner word; cleared all the same).
    file.set_len(layout.len as u64)
        .and_then(|()| file.write_all_at(&header, 0))
        .and_then(|()| file.write_all_at(&0u64.to_le_bytes(), (word::OWNER * 8) as u64))
        .map_err(|e| format!("layout version {version} cannot be extended: {e}"))?;
    Ok(true)
}

/// Checks the header words `found` (up to the checksum) against the
/// layout of `version` this process would write.
fn check_header(found: &[u64], layout: &Layout, version: u64) -> Result<(), String> {
    if found[word::MAGIC] != MAGIC {
        return Err("not a podswitch state file (bad magic)".into());
    }
    if found[word::VERSION] != version {
        let v = found[word::VERSION];
        return Err(format!(
            "layout version {v}, this build reads {LAYOUT_VERSION}"
        ));
    }
    if found[word::CHECKSUM] != fnv(&found[..word::CHECKSUM]) {
        return Err("damaged: the header checksum does not match".into());
    }
    let want = layout.header(found[word::SEED], version);
    if found[word::FINGERPRINT] != want[word::FINGERPRINT] {
        return Err("written by a build that lays entries out differently".into());
    }
    if found[word::BOOT] != want[word::BOOT] {
        return Err("written before the last reboot".into());
    }
    if found[..word::CHECKSUM] != want[..word::CHECKSUM] {
        return Err(format!(
            "sized for {} shards of {} entries and {} affinity slots per shard, configured {} of {} and {}",
            found[word::SHARDS],
            found[word::PER_SHARD],
            found[word::AFFINITY_SLOTS],
            layout.shards,
            layout.per_shard,
            layout.affinity_slots
        ));
    }
    Ok(())
}

fn take<T>(
    chunks: Result<Vec<HugeChunk<T>>, crate::mem::statefile::StateFileError>,
) -> Result<HugeChunk<T>, String> {
    chunks
        .map_err(|e| format!("damaged: {e}"))?
        .pop()
        .ok_or_else(|| "damaged: an empty part".to_string())
}

/// The tables over `file`'s parts (`fresh`: emptied, else as found,
/// their free lists and per-source counts not settled).
fn build(
    file: &StateFile,
    (layout, timeouts): (&Layout, Timeouts),
    header: HugeChunk<AtomicU64>,
    fresh: bool,
) -> Result<KeptTables, String> {
    let seed = header[word::SEED].load(Ordering::Acquire);
    let hasher = KeyHasher::with_seed(seed);
    let damaged = |e: crate::mem::statefile::StateFileError| format!("damaged: {e}");
    let indexes = file
        .chunks::<AtomicU64>(layout.index_at, layout.shards, layout.slots)
        .map_err(damaged)?;
    let frees = file
        .chunks::<u32>(layout.free_at, layout.shards, layout.free_slots)
        .map_err(damaged)?;
    let counters = take(file.chunks::<AtomicU32>(layout.sources_at, 1, SOURCE_COUNTERS))?;
    let sources = Arc::new(SourceCounts::over(counters));
    if fresh {
        sources.clear();
    }
    let all = attach_shards(
        file,
        (layout, timeouts),
        indexes.into_iter().zip(frees).collect(),
        (&hasher, &sources),
        fresh,
    )?;
    let affinity = file
        .chunks::<AffinitySlot>(
            layout.affinity_at,
            AffinityTable::SHARDS,
            layout.affinity_slots,
        )
        .map_err(damaged)?;
    let kept = kept_parts(file, layout)?;
    Ok(KeptTables {
        conntrack: SharedConntrack::from_tables(all, hasher),
        affinity: AffinityTable::from_shards(affinity),
        header: Some(StateHeader {
            words: header,
            path: file.path().to_path_buf(),
            fresh,
            made_at: None,
        }),
        kept: Some(kept),
        report: StateReport::default(),
    })
}

/// The MAC, neighbour and counter parts of `file`.
fn kept_parts(file: &StateFile, layout: &Layout) -> Result<KeptParts, String> {
    let macs_at = layout.kept_at;
    let neighbours_at = macs_at + KeptRecords::words_for(KEPT_MACS) * 8;
    let counters_at = neighbours_at + KeptRecords::words_for(KEPT_NEIGHBOURS) * 8;
    let counter_words = (layout.free_at - counters_at) / 8;
    let words = |at: usize, n: usize| take(file.chunks::<AtomicU64>(at, 1, n));
    Ok(KeptParts {
        macs: words(macs_at, KeptRecords::words_for(KEPT_MACS))?,
        neighbours: words(neighbours_at, KeptRecords::words_for(KEPT_NEIGHBOURS))?,
        counters: KeptBlob::attach(words(counters_at, counter_words)?),
    })
}

/// The conntrack shards over `parts` (index and free list of each) and
/// their entries in `file`, attached and checked in parallel (a million
/// entries are 64 MB to read).
fn attach_shards(
    file: &StateFile,
    (layout, timeouts): (&Layout, Timeouts),
    parts: Vec<(HugeChunk<AtomicU64>, HugeChunk<u32>)>,
    (hasher, sources): (&KeyHasher, &Arc<SourceCounts>),
    fresh: bool,
) -> Result<Vec<ConntrackTable>, String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(layout.shards);
    let per_thread = layout.shards.div_ceil(threads);
    let tables: Vec<Result<Vec<ConntrackTable>, String>> = std::thread::scope(|scope| {
        let mut parts = parts.into_iter();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<_> = parts.by_ref().take(per_thread).collect();
                let (hasher, sources) = (hasher.clone(), Arc::clone(sources));
                scope.spawn(move || {
                    let first = t * per_thread;
                    let attach_one = |(k, (index, free))| {
                        let shard = first + k;
                        let at = layout.entries_at + shard * layout.per_shard * size_of::<Entry>();
                        let entries = take(file.chunks::<Entry>(at, 1, layout.per_shard))?;
                        // A new file is zeros: nothing to check.
                        let bad = (!fresh).then(|| entries.iter().position(|e| !e.is_sound()));
                        if let Some(bad) = bad.flatten() {
                            return Err(format!(
                                "damaged: entry {bad} of shard {shard} holds no TCP state"
                            ));
                        }
                        let memory = (entries, index, free, Arc::clone(&sources));
                        ConntrackTable::attach(memory, hasher.clone(), timeouts, fresh).map_err(
                            |slot| {
                                format!(
                                    "damaged: index slot {slot} of shard {shard} names no entry"
                                )
                            },
                        )
                    };
                    mine.into_iter().enumerate().map(attach_one).collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("attaching failed".into())))
            .collect()
    });
    let mut all = Vec::with_capacity(layout.shards);
    for part in tables {
        all.extend(part?);
    }
    Ok(all)
}

/// Empty tables in a new file at `spec.path` (replacing any), or in
/// anonymous memory if it cannot be made.
fn fresh(spec: &StateSpec, discarded: Option<String>) -> KeptTables {
    let layout = Layout::of(spec);
    // Made beside the file it replaces, which a process being taken over
    // may still use; settling renames it into place.
    let made_at = spec.path.with_extension("state.new");
    let made = (|| -> Result<KeptTables, String> {
        let _ = std::fs::remove_file(&made_at);
        let file = StateFile::create(&made_at, layout.len).map_err(|e| e.to_string())?;
        let header = take(file.chunks::<AtomicU64>(0, 1, HEADER_WORDS))?;
        let words = layout.header(KeyHasher::default().seed(), LAYOUT_VERSION);
        for (slot, value) in header.iter().zip(words) {
            slot.store(value, Ordering::Relaxed);
        }
        let mut tables = build(&file, (&layout, spec.timeouts), header, true)?;
        if let Some(header) = &mut tables.header {
            header.path = spec.path.clone();
            header.made_at = Some(made_at.clone());
        }
        Ok(tables)
    })();
    let mut tables = made.unwrap_or_else(|error| KeptTables {
        conntrack: SharedConntrack::new(spec.conntrack_capacity, spec.timeouts),
        affinity: AffinityTable::new(spec.affinity_capacity),
        header: None,
        kept: None,
        report: StateReport {
            error: Some(error),
            ..StateReport::default()
        },
    });
    tables.report.persistent = tables.header.is_some();
    tables.report.discarded = discarded;
    tables
}

#[cfg(test)]
mod tests;
