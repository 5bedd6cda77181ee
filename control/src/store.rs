//! Durable storage of the API state in redb (`<state-dir>/state.redb`).
//!
//! One table per kind of resource, one key per resource, JSON values. A
//! change writes only the keys that differ from the stored state, in one
//! write transaction committed with redb's default durability (fsync)
//! before the API answers; so `kill -9` at any moment loses no change that
//! was acknowledged, and applying one service next to 10,000 writes one key.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::ApiState;

const PORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ports");
const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const MIRRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("mirrors");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ALL: [TableDefinition<&str, &[u8]>; 7] =
    [PORTS, ROUTES, SERVICES, ENDPOINTS, NODES, MIRRORS, META];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the state database {path}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write failed.
    #[error("state database {step} failed: {message}")]
    Io {
        /// Which step.
        step: &'static str,
        /// redb's message.
        message: String,
    },
    /// A stored value does not decode.
    #[error("stored {table}/{key} does not decode: {message}")]
    Decode {
        /// Table.
        table: &'static str,
        /// Key.
        key: String,
        /// serde's message.
        message: String,
    },
}

fn io(step: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Io {
        step,
        message: e.to_string(),
    }
}

/// One key to write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store `value` (JSON) at `table/key`.
    Put(TableId, String, Vec<u8>),
    /// Delete `table/key`.
    Delete(TableId, String),
}

impl Change {
    /// Store `value` as JSON at `table/key`.
    pub fn put<T: Serialize>(table: TableId, key: &str, value: &T) -> Change {
        Change::Put(table, key.to_string(), json(value))
    }

    /// Delete `table/key`.
    pub fn delete(table: TableId, key: &str) -> Change {
        Change::Delete(table, key.to_string())
    }
}

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableId {
    /// Ports.
    Ports,
    /// Routes.
    Routes,
    /// Services.
    Services,
    /// Endpoints.
    Endpoints,
    /// Nodes.
    Nodes,
    /// Mirrors.
    Mirrors,
    /// Port ids and node addressing.
    Meta,
}

impl TableId {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            TableId::Ports => PORTS,
            TableId::Routes => ROUTES,
            TableId::Services => SERVICES,
            TableId::Endpoints => ENDPOINTS,
            TableId::Nodes => NODES,
            TableId::Mirrors => MIRRORS,
            TableId::Meta => META,
        }
    }
}

/// The state database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `dir/state.redb`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.redb");
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))?;
        let db = Database::create(&path).map_err(open_err)?;
        let txn = db.begin_write().map_err(|e| io("begin")(e.into()))?;
        for t in ALL {
            txn.open_table(t)
                .map_err(|e| io("create tables")(e.into()))?;
        }
        txn.commit().map_err(|e| io("commit")(e.into()))?;
        Ok(Store { db })
    }

    /// Reads the whole stored state.
    pub fn load(&self) -> Result<ApiState, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| io("begin read")(e.into()))?;
        let read = |t: TableId, name: &'static str| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            let table = txn
                .open_table(t.def())
                .map_err(|e| io("open table")(e.into()))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| io("iterate")(e.into()))? {
                let (k, v) = row.map_err(|e| io("read")(e.into()))?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            let _ = name;
            Ok(out)
        };
        let mut state = ApiState {
            ports: decode_map(read(TableId::Ports, "ports")?, "ports")?,
            routes: decode_map(read(TableId::Routes, "routes")?, "routes")?,
            services: decode_map(read(TableId::Services, "services")?, "services")?,
            endpoints: decode_map(read(TableId::Endpoints, "endpoints")?, "endpoints")?,
            nodes: decode_map(read(TableId::Nodes, "nodes")?, "nodes")?,
            mirrors: decode_map(read(TableId::Mirrors, "mirrors")?, "mirrors")?,
            ..ApiState::default()
        };
        for (key, value) in read(TableId::Meta, "meta")? {
            match key.as_str() {
                "port_ids" => state.port_ids = decode("meta", &key, &value)?,
                "node" => state.node = decode("meta", &key, &value)?,
                _ => {}
            }
        }
        Ok(state)
    }

    /// Writes `changes` in one durable transaction.
    pub fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let txn = self
            .db
            .begin_write()
            .map_err(|e| io("begin write")(e.into()))?;
        for c in changes {
            let (t, key) = match c {
                Change::Put(t, k, _) | Change::Delete(t, k) => (*t, k.as_str()),
            };
            let mut table = txn
                .open_table(t.def())
                .map_err(|e| io("open table")(e.into()))?;
            match c {
                Change::Put(_, _, v) => {
                    table
                        .insert(key, v.as_slice())
                        .map_err(|e| io("insert")(e.into()))?;
                }
                Change::Delete(..) => {
                    table.remove(key).map_err(|e| io("remove")(e.into()))?;
                }
            }
        }
        txn.commit().map_err(|e| io("commit")(e.into()))
    }
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Decode {
        table,
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn decode_map<T: DeserializeOwned>(
    rows: Vec<(String, Vec<u8>)>,
    table: &'static str,
) -> Result<BTreeMap<String, T>, StoreError> {
    rows.into_iter()
        .map(|(k, v)| decode(table, &k, &v).map(|d| (k, d)))
        .collect()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn map_changes<T: Serialize + PartialEq>(
    t: TableId,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    out: &mut Vec<Change>,
) {
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push(Change::Put(t, k.clone(), json(v)));
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(Change::Delete(t, k.clone()));
    }
}

/// The keys to write to go from `old` to `new`.
pub fn changes(old: &ApiState, new: &ApiState) -> Vec<Change> {
    let mut out = Vec::new();
    map_changes(TableId::Ports, &old.ports, &new.ports, &mut out);
    map_changes(TableId::Routes, &old.routes, &new.routes, &mut out);
    map_changes(TableId::Services, &old.services, &new.services, &mut out);
    map_changes(TableId::Endpoints, &old.endpoints, &new.endpoints, &mut out);
    map_changes(TableId::Nodes, &old.nodes, &new.nodes, &mut out);
    map_changes(TableId::Mirrors, &old.mirrors, &new.mirrors, &mut out);
    if old.port_ids != new.port_ids {
        out.push(Change::Put(
            TableId::Meta,
            "port_ids".to_string(),
            json(&new.port_ids),
        ));
    }
    if old.node != new.node {
        out.push(Change::Put(
            TableId::Meta,
            "node".to_string(),
            json(&new.node),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Endpoint, Service, ServicePort};

    fn service(i: u32) -> Service {
        Service {
            name: format!("default/svc-{i}"),
            cluster_ip: std::net::Ipv4Addr::from(0x0a60_0000 + i),
            ports: vec![ServicePort {
                name: String::new(),
                protocol: "TCP".into(),
                port: 80,
                target_port: Some(8080),
                node_port: None,
            }],
            session_affinity: "None".into(),
            affinity_timeout_secs: 10800,
            external_ips: Vec::new(),
            external_traffic_policy: "Cluster".into(),
            internal_traffic_policy: "Cluster".into(),
            source: Default::default(),
        }
    }

    #[test]
    fn round_trip_and_minimal_writes() {
        let dir = std::env::temp_dir().join(format!("podswitch-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), ApiState::default());
        let mut a = ApiState::default();
        for i in 0..100 {
            a.services.insert(service(i).name.clone(), service(i));
        }
        a.endpoints.insert(
            "default/svc-1".into(),
            vec![Endpoint {
                address: "10.244.1.5".parse().unwrap(),
                ready: true,
                terminating: false,
                node: String::new(),
                serving: None,
                ports: Default::default(),
            }],
        );
        a.port_ids.insert("pod-a".into(), 0);
        let c = changes(&ApiState::default(), &a);
        assert_eq!(c.len(), 102);
        store.commit(&c).unwrap();
        assert_eq!(store.load().unwrap(), a);
        let mut b = a.clone();
        b.services.remove("default/svc-7");
        b.services.insert(service(100).name.clone(), service(100));
        let c = changes(&a, &b);
        assert_eq!(c.len(), 2, "one delete, one put");
        store.commit(&c).unwrap();
        drop(store);
        let reopened = Store::open(&dir).unwrap();
        assert_eq!(reopened.load().unwrap(), b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
