//! The one commit path every change takes: (1) [`Control::prepare`]
//! builds everything the change leads to — the state, the dataplane
//! snapshot, the service table — touching nothing; (2) the keys that
//! differ are stored; (3) [`Control::publish`] makes the candidate the
//! state and publishes its snapshot with the next generation. A failure in
//! (1) or (2) leaves the stored and the served state as they were (a
//! service table built for a candidate given up is forgotten by the
//! [`ServiceCache`](crate::services::ServiceCache)).
//!
//! A change comes as a whole new state (ports, routes, the node's
//! addressing, nodes, a declarative apply: the snapshot's configuration is
//! built again from it), or as entries replaced in the state (services and
//! their endpoints, mirrors): those leave the configuration as it is and
//! copy nothing of the state, so one endpoint change next to 100,000
//! services costs one Maglev table and the re-indexing of the table.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;
use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::services::ServiceEntry;

use super::Control;
use crate::error::ControlError;
use crate::services::{ServiceCache, ServiceRef};
use crate::state::{ApiState, Endpoint, Mirror, Service};
use crate::store::{Change, TableId};

/// What a change makes of the state.
pub(crate) enum Candidate {
    /// The whole state after the change; `changed` names the services
    /// that differ from the running ones (to build their Maglev tables).
    State {
        /// The new state.
        state: Box<ApiState>,
        /// Services added, changed or removed.
        changed: Vec<CompactString>,
    },
    /// Entries replaced or removed, the rest of the state kept.
    Entries(Entries),
}

impl Candidate {
    /// A new whole state whose services are those running.
    pub fn state(state: ApiState) -> Candidate {
        Candidate::State {
            state: Box::new(state),
            changed: Vec::new(),
        }
    }
}

/// Services and mirrors replaced or removed, by name.
#[derive(Default)]
pub(crate) struct Entries {
    /// Services changed, by name.
    pub services: BTreeMap<CompactString, ServiceEdit>,
    /// Mirrors stored (`Some`) or removed (`None`), by name.
    pub mirrors: BTreeMap<String, Option<Mirror>>,
}

/// What happens to one service.
pub(crate) enum ServiceEdit {
    /// Stored (or replaced) with these endpoints.
    Put(Service, Vec<Endpoint>),
    /// Its endpoints replaced (an empty list removes them).
    Endpoints(Vec<Endpoint>),
    /// Removed with its endpoints.
    Remove,
}

/// A change built in full and not yet stored.
pub(crate) struct Prepared {
    candidate: Candidate,
    snapshot: Snapshot,
}

impl Prepared {
    /// A whole state with the snapshot built for it.
    pub fn new(state: ApiState, changed: Vec<CompactString>, snapshot: Snapshot) -> Prepared {
        Prepared {
            candidate: Candidate::State {
                state: Box::new(state),
                changed,
            },
            snapshot,
        }
    }

    /// The snapshot the change publishes.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The state after the change, when it is a whole new one.
    pub fn whole_state(&self) -> Option<&ApiState> {
        match &self.candidate {
            Candidate::State { state, .. } => Some(state),
            Candidate::Entries(_) => None,
        }
    }
}

impl Entries {
    /// One service changed.
    pub fn service(name: &str, edit: ServiceEdit) -> Entries {
        let mut entries = Entries::default();
        entries.services.insert(name.into(), edit);
        entries
    }

    /// One mirror stored or removed.
    pub fn mirror(name: &str, mirror: Option<Mirror>) -> Entries {
        let mut entries = Entries::default();
        entries.mirrors.insert(name.to_string(), mirror);
        entries
    }

    /// The store's keys that change.
    fn keys(&self) -> Vec<Change> {
        let mut keys = Vec::with_capacity(2 * self.services.len() + self.mirrors.len());
        let endpoints = |name: &str, list: &[Endpoint]| match list {
            [] => Change::delete(TableId::Endpoints, name),
            list => Change::endpoints(name, list),
        };
        for (name, edit) in &self.services {
            match edit {
                ServiceEdit::Put(service, list) => {
                    keys.push(Change::service(name, service));
                    keys.push(endpoints(name, list));
                }
                ServiceEdit::Endpoints(list) => keys.push(endpoints(name, list)),
                ServiceEdit::Remove => {
                    keys.push(Change::delete(TableId::Services, name));
                    keys.push(Change::delete(TableId::Endpoints, name));
                }
            }
        }
        for (name, mirror) in &self.mirrors {
            keys.push(match mirror {
                Some(m) => Change::put(TableId::Mirrors, name, m),
                None => Change::delete(TableId::Mirrors, name),
            });
        }
        keys
    }

    /// `state`'s services with these changes, in name order, each with its endpoints.
    fn services_of<'a>(&'a self, state: &'a ApiState) -> Vec<ServiceRef<'a>> {
        let endpoints_of = |name: &CompactString| {
            let list = state.endpoints.get(name).map(Vec::as_slice);
            list.unwrap_or_default()
        };
        let mut out = Vec::with_capacity(state.services.len() + self.services.len());
        let mut edits = self.services.iter().peekable();
        for (name, service) in &state.services {
            // New services before this one.
            while let Some((new, edit)) = edits.next_if(|(e, _)| *e < name) {
                if let ServiceEdit::Put(s, list) = edit {
                    out.push((new, s, list.as_slice()));
                }
            }
            match edits.next_if(|(e, _)| *e == name).map(|(_, edit)| edit) {
                None => out.push((name, service, endpoints_of(name))),
                Some(ServiceEdit::Put(s, list)) => out.push((name, s, list.as_slice())),
                Some(ServiceEdit::Endpoints(list)) => out.push((name, service, list.as_slice())),
                Some(ServiceEdit::Remove) => {}
            }
        }
        for (new, edit) in edits {
            if let ServiceEdit::Put(s, list) = edit {
                out.push((new, s, list.as_slice()));
            }
        }
        out
    }

    /// Makes the changes in `state`.
    pub fn apply(self, state: &mut ApiState) {
        let set_endpoints = |state: &mut ApiState, name: CompactString, list: Vec<Endpoint>| {
            if list.is_empty() {
                state.endpoints.remove(&name);
            } else {
                state.endpoints.insert(name, list);
            }
        };
        for (name, edit) in self.services {
            match edit {
                ServiceEdit::Put(service, list) => {
                    state.services.insert(name.clone(), service);
                    set_endpoints(state, name, list);
                }
                ServiceEdit::Endpoints(list) => set_endpoints(state, name, list),
                ServiceEdit::Remove => {
                    state.services.remove(&name);
                    state.endpoints.remove(&name);
                }
            }
        }
        for (name, mirror) in self.mirrors {
            match mirror {
                Some(m) => state.mirrors.insert(name, m),
                None => state.mirrors.remove(&name),
            };
        }
    }
}

/// The snapshot of generation `generation` that `candidate` runs (its
/// port ids assigned for `config`), with the service table from `services`
/// (the cache and the config file's entries); `changed` as for [`Control::build`].
fn snapshot_of(
    config: &NodeConfig,
    generation: u64,
    candidate: &ApiState,
    (cache, static_services): (&mut ServiceCache, &[ServiceEntry]),
    changed: &[&str],
) -> Result<Snapshot, ControlError> {
    let snapshot = Snapshot::build_with_ids(config, generation, Some(&candidate.port_ids))?;
    let table = cache.table(candidate, static_services, changed)?;
    Ok(snapshot.with_services(table))
}

/// What `thread` returned; its panic goes on in this thread.
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Control {
    /// Builds, stores and publishes `candidate`: the generation published.
    pub(crate) fn commit(&mut self, candidate: Candidate) -> Result<u64, ControlError> {
        let prepared = self.prepare(candidate)?;
        self.finish(prepared)
    }

    /// Stores and publishes a change built in full.
    pub(crate) fn finish(&mut self, prepared: Prepared) -> Result<u64, ControlError> {
        self.store_prepared(&prepared)?;
        Ok(self.publish(prepared))
    }

    /// Builds everything `candidate` leads to, changing nothing.
    pub(crate) fn prepare(&mut self, candidate: Candidate) -> Result<Prepared, ControlError> {
        match candidate {
            Candidate::State { mut state, changed } => {
                let names: Vec<&str> = changed.iter().map(CompactString::as_str).collect();
                let snapshot = self.build(&mut state, &names)?;
                Ok(Prepared {
                    candidate: Candidate::State { state, changed },
                    snapshot,
                })
            }
            Candidate::Entries(entries) => {
                let current = self.snapshot();
                let table = if entries.services.is_empty() {
                    Arc::clone(&current.services)
                } else {
                    let names: Vec<&str> = entries.services.keys().map(|n| n.as_str()).collect();
                    let state = self.view.state();
                    let services = entries.services_of(&state);
                    self.services
                        .table_of(&services, &self.static_services, &names)?
                };
                let mut snapshot = (*current).clone().with_services(table);
                snapshot.generation += 1;
                Ok(Prepared {
                    candidate: Candidate::Entries(entries),
                    snapshot,
                })
            }
        }
    }

    /// Builds the snapshot `candidate` would run (next generation), with
    /// port ids given to its new ports; `changed` names the services that
    /// differ from the state's (added, changed or removed, with their endpoints).
    pub(crate) fn build(
        &mut self,
        candidate: &mut ApiState,
        changed: &[&str],
    ) -> Result<Snapshot, ControlError> {
        let config = candidate.effective_config(self.view.file());
        candidate.assign_port_ids(&config);
        let generation = self.view.snapshot().generation + 1;
        let services = (&mut self.services, self.static_services.as_slice());
        snapshot_of(&config, generation, candidate, services, changed)
    }

    /// [`commit`](Self::commit) of a whole new state, its keys written on
    /// another thread while its snapshot is built (a declarative apply of
    /// 100,000 new services spends seconds on each), and `checks` run on a
    /// third. The write is committed only once the snapshot is built and
    /// the checks passed, and the snapshot published only once the write is
    /// durable, as on the one path. A check's error comes first: the build
    /// may fail on what the checks refuse.
    pub(crate) fn commit_state_while_storing(
        &mut self,
        mut state: ApiState,
        changed: Vec<CompactString>,
        checks: impl FnOnce(&ApiState) -> Result<(), ControlError> + Send,
    ) -> Result<u64, ControlError> {
        let config = state.effective_config(self.view.file());
        state.assign_port_ids(&config);
        let generation = self.view.snapshot().generation + 1;
        let names: Vec<&str> = changed.iter().map(CompactString::as_str).collect();
        let (go, decision) = std::sync::mpsc::channel();
        let (checked, built, stored) = {
            let old = self.view.state();
            std::thread::scope(|scope| {
                let (store, old, new) = (&self.store, &*old, &state);
                let checker = scope.spawn(move || {
                    let started = std::time::Instant::now();
                    let checked = checks(new);
                    tracing::debug!(
                        checked_ms = started.elapsed().as_millis(),
                        "apply: services checked"
                    );
                    checked
                });
                let writer = scope.spawn(move || {
                    let started = std::time::Instant::now();
                    let mut written = std::time::Duration::ZERO;
                    let stored = store.commit_diff_if(old, new, || {
                        written = started.elapsed();
                        decision.recv().unwrap_or(false)
                    });
                    tracing::debug!(
                        written_ms = written.as_millis(),
                        total_ms = started.elapsed().as_millis(),
                        "apply: store write"
                    );
                    stored
                });
                let started = std::time::Instant::now();
                let services = (&mut self.services, self.static_services.as_slice());
                let built = snapshot_of(&config, generation, new, services, &names);
                tracing::debug!(
                    built_ms = started.elapsed().as_millis(),
                    "apply: snapshot built"
                );
                let checked = joined(checker);
                let _ = go.send(built.is_ok() && checked.is_ok());
                (checked, built, joined(writer))
            })
        };
        checked?;
        let snapshot = built?;
        stored?;
        Ok(self.publish(Prepared::new(state, changed, snapshot)))
    }

    /// Stores the keys in which `prepared` differs from the state.
    pub(crate) fn store_prepared(&self, prepared: &Prepared) -> Result<(), ControlError> {
        match &prepared.candidate {
            Candidate::State { state, .. } => self.store.commit_diff(&self.state(), state)?,
            Candidate::Entries(entries) => self.store.commit(&entries.keys())?,
        }
        Ok(())
    }

    /// Makes the stored `prepared` the state and publishes its snapshot.
    /// Readers wait only for the swap; what it replaces (at 100,000
    /// services, hundreds of MB) is dropped after.
    pub(crate) fn publish(&mut self, prepared: Prepared) -> u64 {
        self.services.settle();
        let generation = prepared.snapshot.generation;
        let mut state = self.view.state_mut();
        let replaced = match prepared.candidate {
            Candidate::State { state: new, .. } => Some(std::mem::replace(&mut *state, *new)),
            Candidate::Entries(entries) => {
                entries.apply(&mut state);
                None
            }
        };
        let old_snapshot = self.view.publish(state, prepared.snapshot);
        drop((replaced, old_snapshot));
        generation
    }
}
