//! The name of the node an endpoint runs on, shared between endpoints.
//!
//! A node at 100,000 services keeps about a million endpoints, which name
//! a few hundred or thousand nodes, often in 30 to 60 characters
//! (`ip-10-0-12-34.eu-west-1.compute.internal`): each distinct name is
//! kept once and an endpoint holds a pointer to it. Names no endpoint uses
//! any more are dropped from the set once it has doubled since the last
//! sweep, so its size follows the names in use.
//!
//! Each thread looks a name up first among the names it met last, without
//! the set's lock: decoding a document of a million endpoints on two cores
//! otherwise passes that lock between them a million times (a third of
//! the decoding's time at 100,000 services).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node name (empty: not given), shared by every endpoint that names it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Option<Arc<str>>);

/// The names in use, and the set's size after its last sweep.
struct Names {
    set: HashSet<Arc<str>>,
    swept: usize,
}

static NAMES: LazyLock<Mutex<Names>> = LazyLock::new(|| {
    Mutex::new(Names {
        set: HashSet::new(),
        swept: 0,
    })
});

/// Names a thread keeps in front of the set before it starts again.
const RECENT_NAMES: usize = 1024;

thread_local! {
    /// This thread's recent names. Weak, so that the set's sweep still
    /// finds the names no endpoint holds: a name swept is no longer found
    /// here either.
    static RECENT: RefCell<HashMap<Box<str>, Weak<str>, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

impl NodeName {
    /// The shared copy of `name`.
    pub fn new(name: &str) -> NodeName {
        if name.is_empty() {
            return NodeName(None);
        }
        if let Some(shared) = RECENT.with_borrow(|recent| recent.get(name)?.upgrade()) {
            return NodeName(Some(shared));
        }
        let shared = shared_copy(name);
        RECENT.with_borrow_mut(|recent| {
            if recent.len() >= RECENT_NAMES {
                recent.clear();
            }
            recent.insert(name.into(), Arc::downgrade(&shared));
        });
        NodeName(Some(shared))
    }

    /// The name (`""` when not given).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }

    /// True when no node is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// The set's copy of `name`, added when missing.
fn shared_copy(name: &str) -> Arc<str> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = names.set.get(name) {
        return Arc::clone(shared);
    }
    if names.set.len() >= 2 * names.swept.max(64) {
        // Held only by the set: no endpoint names it any more.
        names.set.retain(|n| Arc::strong_count(n) > 1);
        names.swept = names.set.len();
    }
    let shared: Arc<str> = Arc::from(name);
    names.set.insert(Arc::clone(&shared));
    shared
}

impl std::ops::Deref for NodeName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for NodeName {
    fn from(name: &str) -> NodeName {
        NodeName::new(name)
    }
}

impl From<String> for NodeName {
    fn from(name: String) -> NodeName {
        NodeName::new(&name)
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NodeName, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NodeName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<NodeName, E> {
                Ok(NodeName::new(name))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_copy() {
        let long = "ip-10-0-12-34.eu-west-1.compute.internal";
        let a = NodeName::new(long);
        let b: NodeName = serde_json::from_str(&format!("{long:?}")).unwrap();
        assert!(matches!((&a.0, &b.0), (Some(x), Some(y)) if Arc::ptr_eq(x, y)));
        assert_eq!(a, b);
        assert_eq!(a, long);
        assert_eq!(serde_json::to_string(&b).unwrap(), format!("{long:?}"));
        assert!(NodeName::new("").is_empty() && NodeName::default().as_str().is_empty());
        assert_eq!(size_of::<NodeName>(), 2 * size_of::<usize>());
    }

    #[test]
    fn names_no_one_uses_are_swept() {
        for i in 0..10_000 {
            drop(NodeName::new(&format!("gone-{i}")));
        }
        let kept = NodeName::new("kept");
        let names = NAMES.lock().unwrap();
        assert!(names.set.len() < 1_000, "{} names kept", names.set.len());
        assert!(names.set.contains("kept") && !kept.is_empty());
    }

    #[test]
    fn threads_share_the_sets_copy_and_a_dropped_name_is_made_again() {
        let here = NodeName::new("shared-by-threads");
        let there = std::thread::spawn(|| NodeName::new("shared-by-threads"))
            .join()
            .unwrap();
        assert!(matches!((&here.0, &there.0), (Some(x), Some(y)) if Arc::ptr_eq(x, y)));
        let weak = Arc::downgrade(here.0.as_ref().unwrap());
        drop((here, there));
        // Swept from the set (which a few hundred new names make happen):
        // this thread's recent entry no longer finds it.
        for i in 0..1_000 {
            drop(NodeName::new(&format!("churn-{i}")));
        }
        assert!(weak.upgrade().is_none());
        assert_eq!(NodeName::new("shared-by-threads"), "shared-by-threads");
    }
}
