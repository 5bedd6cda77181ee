//! An endpoint's port per service port name, as EndpointSlices give them.
//!
//! A node at 100,000 services keeps a million endpoints, so an endpoint's
//! size counts: the map is one pointer (none when empty, the usual case for
//! hand-made endpoints), its sorted pairs shared between clones, which is
//! how the Kubernetes source hands the same ports to every endpoint of a
//! slice. On the wire it is a JSON object, as a map would be.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Port name (`""` for an unnamed port) → port, sorted by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PortMap(Option<Arc<Vec<(CompactString, u32)>>>);

impl PortMap {
    /// True without ports.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The number of named ports.
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// The port of `name`.
    pub fn get(&self, name: &str) -> Option<&u32> {
        let pairs = self.pairs();
        pairs
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &pairs[i].1)
    }

    /// (name, port) in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &u32)> {
        self.pairs().iter().map(|(n, p)| (n.as_str(), p))
    }

    fn pairs(&self) -> &[(CompactString, u32)] {
        self.0.as_deref().map(Vec::as_slice).unwrap_or_default()
    }

    /// This map with `other`'s ports added (`other` wins on a name in both).
    pub fn union(&self, other: &PortMap) -> PortMap {
        self.iter()
            .chain(other.iter())
            .map(|(n, p)| (n, *p))
            .collect()
    }
}

impl<K: Into<CompactString>> FromIterator<(K, u32)> for PortMap {
    /// The last port given for a name counts, as with a map's inserts.
    fn from_iter<I: IntoIterator<Item = (K, u32)>>(iter: I) -> PortMap {
        let map: BTreeMap<CompactString, u32> =
            iter.into_iter().map(|(k, v)| (k.into(), v)).collect();
        if map.is_empty() {
            PortMap(None)
        } else {
            PortMap(Some(Arc::new(map.into_iter().collect())))
        }
    }
}

impl std::ops::Index<&str> for PortMap {
    type Output = u32;

    /// Panics when `name` has no port, as a map's index does.
    fn index(&self, name: &str) -> &u32 {
        self.get(name)
            .unwrap_or_else(|| panic!("no port named {name:?}"))
    }
}

impl fmt::Debug for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PortMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for PortMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PortMap, D::Error> {
        let map = BTreeMap::<CompactString, u32>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map_and_is_one_pointer() {
        assert_eq!(size_of::<PortMap>(), size_of::<usize>());
        let ports: PortMap = [("https", 8443), ("http", 8080), ("http", 8081)]
            .into_iter()
            .collect();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports.get("http"), Some(&8081));
        assert_eq!(ports["https"], 8443);
        assert_eq!(ports.get(""), None);
        assert_eq!(
            serde_json::to_string(&ports).unwrap(),
            r#"{"http":8081,"https":8443}"#
        );
        let back: PortMap = serde_json::from_str(r#"{"https":8443,"http":8081}"#).unwrap();
        assert_eq!(back, ports);
        let empty: PortMap = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty() && empty == PortMap::default());
        let more: PortMap = [("", 53), ("http", 9090)].into_iter().collect();
        let union = ports.union(&more);
        assert_eq!(
            union.iter().collect::<Vec<_>>(),
            [("", &53), ("http", &9090), ("https", &8443)]
        );
    }
}
