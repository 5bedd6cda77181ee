//! Durable storage of the API state in redb (`<state-dir>/state.redb`).
//!
//! One table per kind of resource, one key per resource: services and
//! endpoint lists as compact binary records (the `record` module: a
//! declarative apply writes 200,000 of them), the rest as JSON. A
//! change writes only the keys that differ from the stored state, in one
//! write transaction committed with redb's default durability (fsync)
//! before the API answers; so `kill -9` at any moment loses no change that
//! was acknowledged, and applying one service next to 10,000 writes one key.
//!
//! A damaged file is never taken for "no state": an empty file, one that is
//! not a redb database, or one redb fails (or panics) on while it is opened
//! and read is [`StoreError::Damaged`], whose message names the file and the
//! way to recover. A new database is built as `state.redb.new` and renamed
//! into place, so a crash while creating it leaves no empty `state.redb`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::{ApiState, Endpoint, Service};

mod record;

const PORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ports");
const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const MIRRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("mirrors");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ALL: [TableDefinition<&str, &[u8]>; 7] =
    [PORTS, ROUTES, SERVICES, ENDPOINTS, NODES, MIRRORS, META];

/// The database file in the state directory.
pub const FILE_NAME: &str = "state.redb";

/// redb's page cache (its default is 1 GiB). Writes and the load at start
/// go through the file in order, and a cache of the whole file would keep
/// about as much memory again as the state itself (about 70 MB at 100,000
/// services): a small one costs the writes nothing measurable.
pub const CACHE_BYTES: usize = 8 << 20;

fn builder(cache_bytes: usize) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_bytes);
    builder
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read as a state database.
    #[error(
        "the state database {path} is damaged: {reason}. It is not taken for an empty \
         state, so that nothing stored is lost silently. To recover, keep it aside \
         (mv {path} {path}.damaged), then put back a copy of the file, or start with no \
         stored state and set the state again (podswitchctl apply -f FILE); \
         see \"The state file\" in the README"
    )]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
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
        /// What is wrong with it.
        message: String,
    },
}

/// One key to write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store `value` (its stored form) at `table/key`.
    Put(TableId, String, Vec<u8>),
    /// Delete `table/key`.
    Delete(TableId, String),
}

impl Change {
    /// Store `value` as JSON at `table/key`.
    pub fn put<T: Serialize>(table: TableId, key: &str, value: &T) -> Change {
        Change::Put(table, key.to_string(), json(value))
    }

    /// Store `service` at `services/key`.
    pub fn service(key: &str, service: &Service) -> Change {
        let mut value = Vec::new();
        record::put_service(&mut value, service);
        Change::Put(TableId::Services, key.to_string(), value)
    }

    /// Store `list` at `endpoints/key`.
    pub fn endpoints(key: &str, list: &[Endpoint]) -> Change {
        let mut value = Vec::new();
        record::put_endpoints(&mut value, list);
        Change::Put(TableId::Endpoints, key.to_string(), value)
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
    /// `None` only while it is dropped.
    db: Option<Database>,
    path: PathBuf,
    /// Damage was found: the file must not be written again, not even
    /// when closing it. Atomic so that a write can run on another thread
    /// ([`Store::commit_diff_if`]).
    damaged: AtomicBool,
}

thread_local! {
    /// Set while this thread runs redb under [`without_panics`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)`. redb panics on some
/// damaged files instead of returning an error; such a panic is reported as
/// damage, and not also printed as a crash (the panic hook stays quiet for
/// a guarded thread and passes every other panic on).
fn without_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was_guarded = GUARDED.with(|g| g.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was_guarded));
    outcome.map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        format!("the database library failed on it ({message})")
    })
}

/// Whether redb's error means the file's content is wrong (not, say, a
/// permission or a lock).
fn is_damage(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

impl Store {
    /// Opens `dir/state.redb`, creating it if there is none; a damaged file
    /// is [`StoreError::Damaged`] and is left as it is (but see
    /// [`check_read_only`] for a file not closed cleanly).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, CACHE_BYTES)
    }

    /// As [`Store::open`] with a page cache of `cache_bytes` (e.g. 0, to
    /// measure the rest of the control plane's memory).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let io_err = |e| open_err(redb::DatabaseError::Storage(redb::StorageError::Io(e)));
        std::fs::create_dir_all(dir).map_err(io_err)?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => return Err(damaged(&path, "the file is empty")),
            Ok(_) => check_read_only(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_new(&path).map_err(open_err)?;
            }
            Err(e) => return Err(io_err(e)),
        }
        let db = match without_panics(|| builder(cache_bytes).open(&path)) {
            Ok(Ok(db)) => db,
            Ok(Err(e)) if is_damage(&e) => return Err(damaged(&path, &e.to_string())),
            Ok(Err(e)) => return Err(open_err(e)),
            Err(panic) => return Err(damaged(&path, &panic)),
        };
        let store = Store {
            db: Some(db),
            path,
            damaged: AtomicBool::new(false),
        };
        store.guarded("creating the tables", |store| {
            let txn = store
                .db()?
                .begin_write()
                .map_err(io_error(&store.path, "begin"))?;
            for t in ALL {
                txn.open_table(t)
                    .map_err(io_error(&store.path, "create tables"))?;
            }
            txn.commit().map_err(io_error(&store.path, "commit"))
        })?;
        Ok(store)
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Io {
            step: "access",
            message: "the database is closed".to_string(),
        })
    }

    /// Runs `f`; a panic in redb is [`StoreError::Damaged`], and any damage
    /// found keeps the file from being written again.
    fn guarded<T>(
        &self,
        step: &'static str,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = without_panics(|| f(self))
            .unwrap_or_else(|panic| Err(damaged(&self.path, &format!("{step}: {panic}"))));
        if let Err(StoreError::Damaged { .. }) = result {
            self.damaged.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Reads the whole stored state; a value that does not decode is damage too.
    pub fn load(&self) -> Result<ApiState, StoreError> {
        self.guarded("reading the state", |store| {
            read_state(store.db()?, &store.path)
        })
    }

    /// Writes `changes` in one durable transaction.
    pub fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.guarded("writing", |store| store.write_all(changes))
    }

    /// Writes the keys in which `new` differs from `old` in one durable
    /// transaction, encoding each as it is written (as [`Store::commit`] of
    /// [`changes`], without the list). Nothing to write is no transaction.
    pub fn commit_diff(&self, old: &ApiState, new: &ApiState) -> Result<(), StoreError> {
        self.commit_diff_if(old, new, || true).map(drop)
    }

    /// As [`Store::commit_diff`], but once the keys are written the
    /// transaction waits for `proceed` and is committed only if it says so
    /// (else dropped): the keys of a large change can be written on another
    /// thread while the caller builds what the change runs. Returns whether
    /// it was committed.
    pub fn commit_diff_if(
        &self,
        old: &ApiState,
        new: &ApiState,
        proceed: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        self.guarded("writing", |store| store.write_diff(old, new, proceed))
    }

    fn write_diff(
        &self,
        old: &ApiState,
        new: &ApiState,
        proceed: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        let txn = self
            .db()?
            .begin_write()
            .map_err(io_error(&self.path, "begin write"))?;
        let mut written = 0usize;
        {
            let mut open: Option<(TableId, redb::Table<&str, &[u8]>)> = None;
            diff_keys(old, new, &mut |t, key, value| {
                if open.as_ref().is_none_or(|(id, _)| *id != t) {
                    open = None;
                    let table = txn
                        .open_table(t.def())
                        .map_err(io_error(&self.path, "open table"))?;
                    open = Some((t, table));
                }
                let Some((_, table)) = open.as_mut() else {
                    return Ok(());
                };
                written += 1;
                match value {
                    Some(v) => table
                        .insert(key, v)
                        .map(drop)
                        .map_err(io_error(&self.path, "insert")),
                    None => table
                        .remove(key)
                        .map(drop)
                        .map_err(io_error(&self.path, "remove")),
                }
            })?;
        }
        if !proceed() {
            txn.abort().map_err(io_error(&self.path, "abort"))?;
            return Ok(false);
        }
        if written == 0 {
            txn.abort().map_err(io_error(&self.path, "abort"))?;
            return Ok(true);
        }
        txn.commit().map_err(io_error(&self.path, "commit"))?;
        Ok(true)
    }

    fn write_all(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self
            .db()?
            .begin_write()
            .map_err(io_error(&self.path, "begin write"))?;
        for c in changes {
            let (t, key) = match c {
                Change::Put(t, k, _) | Change::Delete(t, k) => (*t, k.as_str()),
            };
            let mut table = txn
                .open_table(t.def())
                .map_err(io_error(&self.path, "open table"))?;
            match c {
                Change::Put(_, _, v) => {
                    table
                        .insert(key, v.as_slice())
                        .map_err(io_error(&self.path, "insert"))?;
                }
                Change::Delete(..) => {
                    table.remove(key).map_err(io_error(&self.path, "remove"))?;
                }
            }
        }
        txn.commit().map_err(io_error(&self.path, "commit"))
    }
}

/// Reads the whole file read-only, so that damage is found before
/// anything writes to it. A file not closed cleanly (after a crash) cannot
/// be opened read-only: redb repairs it when it is opened for writing, and
/// damage is found by the reading after that.
fn check_read_only(path: &Path) -> Result<(), StoreError> {
    let outcome = without_panics(|| match builder(CACHE_BYTES).open_read_only(path) {
        Ok(db) => read_state(&db, path).map(drop),
        Err(redb::DatabaseError::RepairAborted) => Ok(()),
        Err(e) if is_damage(&e) => Err(damaged(path, &e.to_string())),
        Err(source) => Err(StoreError::Open {
            path: path.display().to_string(),
            source,
        }),
    });
    outcome.unwrap_or_else(|panic| Err(damaged(path, &format!("checking it: {panic}"))))
}

/// What a failed redb call becomes: damage if redb found the file
/// corrupted, else the step that failed.
fn io_error<E: Into<redb::Error>>(path: &Path, step: &'static str) -> impl Fn(E) -> StoreError {
    move |e| match e.into() {
        redb::Error::Corrupted(reason) => damaged(path, &format!("{step}: {reason}")),
        e => StoreError::Io {
            step,
            message: e.to_string(),
        },
    }
}

/// The stored state in `db` (the file `path`); a missing table is empty
/// (a new file opened read-only has none yet).
fn read_state(db: &impl ReadableDatabase, path: &Path) -> Result<ApiState, StoreError> {
    let txn = db.begin_read().map_err(io_error(path, "begin read"))?;
    let read = |t: TableId| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let table = match txn.open_table(t.def()) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io_error(path, "open table")(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(io_error(path, "iterate"))? {
            let (k, v) = row.map_err(io_error(path, "read"))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    };
    let decode_error = |e: StoreError| damaged(path, &e.to_string());
    let mut state = ApiState {
        ports: decode_map(read(TableId::Ports)?, "ports").map_err(decode_error)?,
        routes: decode_map(read(TableId::Routes)?, "routes").map_err(decode_error)?,
        services: decode_records(read(TableId::Services)?, "services", record::service)
            .map_err(decode_error)?,
        endpoints: decode_records(read(TableId::Endpoints)?, "endpoints", record::endpoints)
            .map_err(decode_error)?,
        nodes: decode_map(read(TableId::Nodes)?, "nodes").map_err(decode_error)?,
        mirrors: decode_map(read(TableId::Mirrors)?, "mirrors").map_err(decode_error)?,
        ..ApiState::default()
    };
    for (key, value) in read(TableId::Meta)? {
        match key.as_str() {
            "port_ids" => state.port_ids = decode("meta", &key, &value).map_err(decode_error)?,
            "node" => state.node = decode("meta", &key, &value).map_err(decode_error)?,
            _ => {}
        }
    }
    Ok(state)
}

impl Drop for Store {
    /// Closing writes to the file (redb stores its allocator state), which
    /// redb may panic on when the file is damaged: a damaged file is left
    /// as it is (the handle is leaked; the daemon is about to exit), and a
    /// panic while closing any other is only logged.
    fn drop(&mut self) {
        self.close();
    }
}

impl Store {
    /// Closes the database now (handing it to the next process, which
    /// opens it); what is asked of it afterwards fails as closed.
    pub fn close(&mut self) {
        let Some(db) = self.db.take() else {
            return;
        };
        if self.damaged.load(Ordering::Relaxed) {
            std::mem::forget(db);
        } else if let Err(panic) = without_panics(move || drop(db)) {
            tracing::warn!(file = %self.path.display(), "closing the state database: {panic}");
        }
    }
}

fn damaged(path: &Path, reason: &str) -> StoreError {
    StoreError::Damaged {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds an empty database beside `path` and renames it into place, so
/// that `path` is either absent or a whole database, never an empty file.
fn create_new(path: &Path) -> Result<(), redb::DatabaseError> {
    let fresh = path.with_extension("redb.new");
    let _ = std::fs::remove_file(&fresh);
    drop(Database::create(&fresh)?);
    std::fs::File::open(&fresh)?.sync_all()?;
    std::fs::rename(&fresh, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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

fn decode_map<K: From<String> + Ord, T: DeserializeOwned>(
    rows: Vec<(String, Vec<u8>)>,
    table: &'static str,
) -> Result<BTreeMap<K, T>, StoreError> {
    rows.into_iter()
        .map(|(k, v)| decode(table, &k, &v).map(|d| (k.into(), d)))
        .collect()
}

/// As [`decode_map`] for a table of binary records (`decode_record`), whose
/// values earlier builds wrote as JSON.
fn decode_records<K: From<String> + Ord, T: DeserializeOwned>(
    rows: Vec<(String, Vec<u8>)>,
    table: &'static str,
    decode_record: fn(&[u8]) -> Result<T, String>,
) -> Result<BTreeMap<K, T>, StoreError> {
    rows.into_iter()
        .map(|(k, v)| {
            let value = if record::is_record(&v) {
                decode_record(&v).map_err(|message| StoreError::Decode {
                    table,
                    key: k.clone(),
                    message,
                })
            } else {
                decode(table, &k, &v)
            };
            value.map(|d| (k.into(), d))
        })
        .collect()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// What a diff hands on per key: the table, the key, and the new value's
/// JSON (`None`: the key goes).
type EachKey<'a> = dyn FnMut(TableId, &str, Option<&[u8]>) -> Result<(), StoreError> + 'a;

/// Appends the stored form of a value to a buffer.
type Encode<T> = fn(&mut Vec<u8>, &T) -> Result<(), StoreError>;

/// The JSON form, for the tables of few values.
fn encode_json<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), StoreError> {
    serde_json::to_writer(out, value).map_err(|e| StoreError::Io {
        step: "encode",
        message: e.to_string(),
    })
}

/// Calls `each` for every key of `t` in which `new` differs from `old`;
/// values are encoded one at a time into `buf`.
fn map_diff<K: Ord + AsRef<str>, T: PartialEq>(
    (t, encode): (TableId, Encode<T>),
    old: &BTreeMap<K, T>,
    new: &BTreeMap<K, T>,
    buf: &mut Vec<u8>,
    each: &mut EachKey<'_>,
) -> Result<(), StoreError> {
    for (k, v) in new {
        if old.get(k) != Some(v) {
            buf.clear();
            encode(buf, v)?;
            each(t, k.as_ref(), Some(buf))?;
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        each(t, k.as_ref(), None)?;
    }
    Ok(())
}

/// Calls `each` for every key to write to go from `old` to `new`, without
/// holding the encoded values of more than one key (an apply of 100,000
/// services writes about 70 MB).
fn diff_keys(old: &ApiState, new: &ApiState, each: &mut EachKey<'_>) -> Result<(), StoreError> {
    let mut buf = Vec::new();
    let ports = (TableId::Ports, encode_json as Encode<_>);
    map_diff(ports, &old.ports, &new.ports, &mut buf, each)?;
    let routes = (TableId::Routes, encode_json as Encode<_>);
    map_diff(routes, &old.routes, &new.routes, &mut buf, each)?;
    let services: Encode<Service> = |out, s| {
        record::put_service(out, s);
        Ok(())
    };
    let (old_s, new_s) = (&old.services, &new.services);
    map_diff((TableId::Services, services), old_s, new_s, &mut buf, each)?;
    let endpoints: Encode<Vec<Endpoint>> = |out, list| {
        record::put_endpoints(out, list);
        Ok(())
    };
    let (old_e, new_e) = (&old.endpoints, &new.endpoints);
    map_diff(
        (TableId::Endpoints, endpoints),
        old_e,
        new_e,
        &mut buf,
        each,
    )?;
    let nodes = (TableId::Nodes, encode_json as Encode<_>);
    map_diff(nodes, &old.nodes, &new.nodes, &mut buf, each)?;
    let mirrors = (TableId::Mirrors, encode_json as Encode<_>);
    map_diff(mirrors, &old.mirrors, &new.mirrors, &mut buf, each)?;
    if old.port_ids != new.port_ids {
        each(TableId::Meta, "port_ids", Some(&json(&new.port_ids)))?;
    }
    if old.node != new.node {
        each(TableId::Meta, "node", Some(&json(&new.node)))?;
    }
    Ok(())
}

/// The keys to write to go from `old` to `new`.
pub fn changes(old: &ApiState, new: &ApiState) -> Vec<Change> {
    let mut out = Vec::new();
    let _ = diff_keys(old, new, &mut |t, key, value| {
        out.push(match value {
            Some(v) => Change::Put(t, key.to_string(), v.to_vec()),
            None => Change::Delete(t, key.to_string()),
        });
        Ok(())
    });
    out
}

#[cfg(test)]
mod tests;
