//! Counters that continue across a restart or an upgrade: the totals
//! published last (to the stats file, `/metrics` or the API) are kept in
//! the state file, and the next process adds what it found there to its
//! own workers' counts. A scrape never sees a published counter go back:
//! the value is kept before it is shown.
//!
//! Kept: per port (by name) the received, sent, error and dropped frame
//! and byte counts, the drops by reason and the events. A port that is not
//! in the next process's configuration loses its counts. After a SIGTERM
//! or a takeover the totals are exact (the old process publishes once its
//! workers stopped); after `kill -9` they continue from the last
//! publication (at most a second old), so frames counted after it and
//! before the kill are not counted.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use podswitch_dataplane::mem::kept::KeptBlob;

use super::{PortStats, Stats};

/// What is published, as kept in the file (JSON).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Published {
    /// Per port name: rx packets, rx bytes, tx packets, tx bytes, rx errors, rx dropped.
    ports: BTreeMap<String, [u64; 6]>,
    drops: BTreeMap<String, u64>,
    events: BTreeMap<String, u64>,
}

fn port_words(p: &PortStats) -> [u64; 6] {
    [
        p.rx_packets,
        p.rx_bytes,
        p.tx_packets,
        p.tx_bytes,
        p.rx_errors,
        p.rx_dropped,
    ]
}

struct Kept {
    /// What the previous process published last.
    base: Published,
    /// Where this process publishes; `None` once sealed.
    blob: Mutex<Option<KeptBlob>>,
}

static KEPT: OnceLock<Kept> = OnceLock::new();

/// What the counters part of the state file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing published yet (a new file).
    Nothing,
    /// Totals of this many ports, and the drops and events.
    Totals(usize),
}

/// Takes the state file's counters part (once, before the workers
/// start): the totals it holds are where this process's counters go on
/// from. Totals that cannot be read are an error (and not used).
pub fn attach(blob: KeptBlob) -> Result<Found, String> {
    let (base, found) = match blob.load() {
        None => (Published::default(), Ok(Found::Nothing)),
        Some(bytes) => match serde_json::from_slice::<Published>(&bytes) {
            Ok(p) => {
                let n = p.ports.len();
                (p, Ok(Found::Totals(n)))
            }
            Err(e) => (
                Published::default(),
                Err(format!("the kept counters cannot be read: {e}")),
            ),
        },
    };
    let kept = Kept {
        base,
        blob: Mutex::new(Some(blob)),
    };
    if KEPT.set(kept).is_err() {
        return Err("the kept counters were attached already".into());
    }
    found
}

/// Adds the kept base to `stats` and publishes the result.
pub(super) fn carry(stats: &mut Stats) {
    let Some(kept) = KEPT.get() else { return };
    let add = |to: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>| {
        for (name, n) in from {
            if let Some(v) = to.get_mut(name) {
                *v = v.wrapping_add(*n);
            }
        }
    };
    add(&mut stats.drops, &kept.base.drops);
    add(&mut stats.events, &kept.base.events);
    for p in &mut stats.ports {
        if let Some(b) = kept.base.ports.get(&p.name) {
            p.rx_packets += b[0];
            p.rx_bytes += b[1];
            p.tx_packets += b[2];
            p.tx_bytes += b[3];
            p.rx_errors += b[4];
            p.rx_dropped += b[5];
        }
    }
    let blob = kept.blob.lock().unwrap_or_else(|e| e.into_inner());
    let Some(blob) = blob.as_ref() else { return };
    let published = Published {
        ports: stats
            .ports
            .iter()
            .map(|p| (p.name.clone(), port_words(p)))
            .collect(),
        drops: stats.drops.clone(),
        events: stats.events.clone(),
    };
    let bytes = serde_json::to_vec(&published).unwrap_or_default();
    if !blob.store(&bytes) {
        tracing::warn!(
            bytes = bytes.len(),
            "the counters do not fit the state file's part; not kept"
        );
    }
}

/// Publishes no more (handed over: the next process's totals are kept
/// from now on).
pub fn seal() {
    if let Some(kept) = KEPT.get() {
        kept.blob.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;
    use podswitch_dataplane::mem::hugemem;

    // The only test in this crate that attaches (the totals are a process's).
    #[test]
    fn counters_go_on_from_the_kept_totals_until_sealed() {
        let words = hugemem::chunks(1, 4096, AtomicU64::default).pop().unwrap();
        let before = KeptBlob::attach(words);
        let base = Published {
            ports: [("c".to_string(), [1, 100, 2, 200, 3, 4])].into(),
            drops: [("no_route".to_string(), 5)].into(),
            events: [("routed".to_string(), 6)].into(),
        };
        assert!(before.store(&serde_json::to_vec(&base).unwrap()));
        assert_eq!(attach(before), Ok(Found::Totals(1)));
        let mut stats = Stats {
            ports: vec![
                PortStats {
                    name: "c".into(),
                    rx_packets: 10,
                    ..PortStats::default()
                },
                PortStats {
                    name: "new".into(),
                    rx_packets: 1,
                    ..PortStats::default()
                },
            ],
            drops: [("no_route".to_string(), 1), ("ttl_expired".to_string(), 0)].into(),
            events: [("routed".to_string(), 0)].into(),
            ..Stats::default()
        };
        carry(&mut stats);
        let c = &stats.ports[0];
        assert_eq!((c.rx_packets, c.tx_bytes, c.rx_dropped), (11, 200, 4));
        assert_eq!(stats.ports[1].rx_packets, 1);
        assert_eq!((stats.drops["no_route"], stats.events["routed"]), (6, 6));
        // Published: what the next process starts from.
        let published = |kept: &Kept| {
            let blob = kept.blob.lock().unwrap();
            serde_json::from_slice::<Published>(&blob.as_ref().unwrap().load().unwrap()).unwrap()
        };
        let p = published(KEPT.get().unwrap());
        assert_eq!(
            (p.ports["c"][0], p.ports["new"][0], p.drops["no_route"]),
            (11, 1, 6)
        );
        seal();
        let mut later = stats.clone();
        later.ports[0].rx_packets = 0;
        carry(&mut later);
        assert!(KEPT.get().unwrap().blob.lock().unwrap().is_none());
        assert_eq!(later.ports[0].rx_packets, 1, "the base is still added");
    }
}
