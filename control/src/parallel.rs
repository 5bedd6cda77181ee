//! Work spread over the cores: an apply of 100,000 services decodes
//! 100,000 service objects and builds 100,000 Maglev tables.
//!
//! Threads take the items in blocks as they go rather than a fixed half
//! each, so that a thread the scheduler holds back (a node busy with other
//! work) leaves the rest of its share to the others.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Items a thread takes at a time.
const BLOCK: usize = 256;

/// `f` of every item of `items`, in order, on every core the process may
/// use (at most 8); on this thread alone below `min_parallel` items.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    min_parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || items.len() < min_parallel.max(2 * BLOCK) {
        return items.iter().map(f).collect();
    }
    let blocks: Vec<&[T]> = items.chunks(BLOCK).collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Vec<R>)>> = Mutex::new(Vec::with_capacity(blocks.len()));
    let work = || {
        let mut mine = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(block) = blocks.get(index) else {
                break;
            };
            mine.push((index, block.iter().map(&f).collect::<Vec<R>>()));
        }
        done.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|(index, _)| *index);
    done.into_iter().flat_map(|(_, results)| results).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_order_whatever_thread_made_them() {
        let items: Vec<u64> = (0..10_000).collect();
        let squares = super::map(&items, 0, |&i| {
            if i % 1000 == 0 {
                // A slow item: the other threads go on meanwhile.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            i * i
        });
        assert!(
            squares
                .iter()
                .enumerate()
                .all(|(i, &s)| s == (i * i) as u64)
        );
        assert_eq!(
            super::map(&items[..10], 0, |&i| i + 1),
            (1..=10).collect::<Vec<_>>()
        );
        assert!(super::map(&[] as &[u64], 0, |&i| i).is_empty());
    }
}
