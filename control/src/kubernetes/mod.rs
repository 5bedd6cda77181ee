//! The Kubernetes source: podswitchd follows a cluster's Services,
//! EndpointSlices and Nodes as kube-proxy and flannel do.
//!
//! Three watchers (kube-runtime's, which list, then watch, and list again
//! after a `410 Gone` or a lost connection) keep a copy of the objects.
//! Each change marks what it touches dirty: a Service or a slice marks its
//! service, a Node the nodes. Once every watcher has listed, a sync at
//! most every `min_sync_interval` translates the dirty objects
//! ([`translate`]) and hands them to the control plane as one
//! [`SourceUpdate`]: one stored commit, one published snapshot. While the
//! API server cannot be reached, forwarding goes on with the last state
//! (stored, so a restart forwards from it too) and the status says
//! `degraded`; a relist after reconnecting brings what changed meanwhile.
//!
//! Objects from here belong to the source: the control API refuses to
//! change them, and hand-made objects live beside them.

pub mod local_node;
pub mod status;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api as KubeApi, Client, ResourceExt};

use crate::control::{SharedControl, SourceUpdate};
pub use status::SourceStatus;
use translate::{
    SERVICE_NAME_LABEL, TRIGGER_TIME_ANNOTATION, Translation, VTEP_MAC_ANNOTATION, object_key,
};

/// How podswitchd reaches the API server, and who it is there.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// A kubeconfig file; without it, in-cluster credentials (service
    /// account token and CA, `KUBERNETES_SERVICE_HOST/PORT`) or `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (`NODE_NAME` from the downward API).
    pub node_name: String,
    /// The least time between two syncs: changes within it are coalesced.
    pub min_sync_interval: Duration,
    /// The VNI of the overlay peers found through Nodes.
    pub vni: u32,
}

/// `--kubernetes` and its options; what they leave out comes from the
/// config file's `[kubernetes]`.
#[derive(Debug, Clone, Default)]
pub struct KubernetesRun {
    /// `--kubernetes`: follow the cluster even without `[kubernetes]`.
    pub enabled: bool,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--node-name` / `NODE_NAME`.
    pub node_name: Option<String>,
    /// `--min-sync-interval-ms`.
    pub min_sync_interval: Option<Duration>,
}

impl KubernetesRun {
    /// The source's options with the file's section, or `None` when
    /// neither turns the source on. The node name defaults to `[node] name`.
    pub fn resolve(
        &self,
        file: Option<&podswitch_dataplane::config::KubernetesSection>,
        snapshot: &podswitch_dataplane::config::Snapshot,
    ) -> Option<KubeOptions> {
        if !self.enabled && !file.is_some_and(|f| f.enabled) {
            return None;
        }
        Some(KubeOptions {
            kubeconfig: self
                .kubeconfig
                .clone()
                .or_else(|| file.and_then(|f| f.kubeconfig.clone())),
            node_name: self
                .node_name
                .clone()
                .or_else(|| file.and_then(|f| f.node_name.clone()))
                .unwrap_or_else(|| snapshot.node_name.clone()),
            min_sync_interval: self.min_sync_interval.unwrap_or_else(|| {
                Duration::from_millis(file.map_or(50, |f| f.min_sync_interval_ms))
            }),
            vni: snapshot.overlay.as_ref().map_or(1, |o| o.vni),
        })
    }
}

/// Starts the source on `runtime`; its status is shared with the API.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    control: Arc<SharedControl>,
    options: KubeOptions,
) -> Arc<SourceStatus> {
    let status = Arc::new(SourceStatus::new(&options.node_name));
    control.lock().set_local_node(&options.node_name);
    let task_status = Arc::clone(&status);
    runtime.spawn(async move {
        loop {
            match client(options.kubeconfig.as_deref()).await {
                Ok(client) => {
                    run(client, &control, &options, &task_status).await;
                    return;
                }
                Err(e) => {
                    task_status.set_error(format!("no Kubernetes client: {e:#}"));
                    tracing::warn!(error = %format!("{e:#}"), "Kubernetes source: cannot build a client; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
    status
}

/// A client from `kubeconfig`, else in-cluster credentials, else `$KUBECONFIG`.
pub(crate) async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// One watcher's event, tagged with its kind (boxed: objects are large).
enum Watched {
    Service(Box<Result<Event<KubeService>, watcher::Error>>),
    Slice(Box<Result<Event<EndpointSlice>, watcher::Error>>),
    Node(Box<Result<Event<Node>, watcher::Error>>),
}

/// The objects seen, and what changed since the last sync.
#[derive(Default)]
struct Cache {
    services: HashMap<String, KubeService>,
    /// Slices by service key, then by slice name.
    slices: HashMap<String, BTreeMap<String, EndpointSlice>>,
    nodes: BTreeMap<String, Node>,
    /// Objects of a relist in progress, per kind (replaced at its end).
    relist_services: Option<HashMap<String, KubeService>>,
    relist_slices: Option<HashMap<String, BTreeMap<String, EndpointSlice>>>,
    relist_nodes: Option<BTreeMap<String, Node>>,
    /// Which kinds have listed once (services, slices, nodes).
    listed: [bool; 3],
    dirty_services: BTreeSet<String>,
    dirty_nodes: bool,
    /// Trigger times of slice changes not yet programmed.
    triggers: Vec<SystemTime>,
}

impl Cache {
    fn ready(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    fn dirty(&self) -> bool {
        !self.dirty_services.is_empty() || self.dirty_nodes
    }

    /// Applies one event; `Err` is a watcher error (the watcher retries).
    fn apply(&mut self, event: Watched, status: &SourceStatus) -> Result<(), String> {
        match event {
            Watched::Service(e) => match e.map_err(|e| format!("services: {e}"))? {
                Event::Init => self.relist_services = Some(HashMap::new()),
                Event::InitApply(s) => {
                    if let Some(r) = &mut self.relist_services {
                        r.insert(service_key(&s), s);
                    }
                }
                Event::InitDone => {
                    let new = self.relist_services.take().unwrap_or_default();
                    self.dirty_services.extend(self.services.keys().cloned());
                    self.dirty_services.extend(new.keys().cloned());
                    self.services = new;
                    self.listed[0] = true;
                    status.listed("services");
                }
                Event::Apply(s) => {
                    let key = service_key(&s);
                    self.dirty_services.insert(key.clone());
                    self.services.insert(key, s);
                }
                Event::Delete(s) => {
                    let key = service_key(&s);
                    self.dirty_services.insert(key.clone());
                    self.services.remove(&key);
                }
            },
            Watched::Slice(e) => match (*e).map_err(|e| format!("endpointslices: {e}"))? {
                Event::Init => self.relist_slices = Some(HashMap::new()),
                Event::InitApply(s) => {
                    if let Some(r) = &mut self.relist_slices
                        && let Some(key) = slice_service(&s)
                    {
                        r.entry(key).or_default().insert(s.name_any(), s);
                    }
                }
                Event::InitDone => {
                    let new = self.relist_slices.take().unwrap_or_default();
                    for (key, slices) in &new {
                        if self.slices.get(key) != Some(slices) {
                            self.dirty_services.insert(key.clone());
                        }
                    }
                    for key in self.slices.keys() {
                        if !new.contains_key(key) {
                            self.dirty_services.insert(key.clone());
                        }
                    }
                    self.slices = new;
                    self.listed[1] = true;
                    status.listed("endpointslices");
                }
                Event::Apply(s) => {
                    if let Some(key) = slice_service(&s) {
                        if let Some(t) = trigger_time(&s) {
                            self.triggers.push(t);
                        }
                        self.dirty_services.insert(key.clone());
                        self.slices.entry(key).or_default().insert(s.name_any(), s);
                    }
                }
                Event::Delete(s) => {
                    if let Some(key) = slice_service(&s) {
                        self.dirty_services.insert(key.clone());
                        if let Some(map) = self.slices.get_mut(&key) {
                            map.remove(&s.name_any());
                            if map.is_empty() {
                                self.slices.remove(&key);
                            }
                        }
                    }
                }
            },
            Watched::Node(e) => match (*e).map_err(|e| format!("nodes: {e}"))? {
                Event::Init => self.relist_nodes = Some(BTreeMap::new()),
                Event::InitApply(n) => {
                    if let Some(r) = &mut self.relist_nodes {
                        r.insert(n.name_any(), n);
                    }
                }
                Event::InitDone => {
                    self.nodes = self.relist_nodes.take().unwrap_or_default();
                    self.dirty_nodes = true;
                    self.listed[2] = true;
                    status.listed("nodes");
                }
                Event::Apply(n) => {
                    self.dirty_nodes = true;
                    self.nodes.insert(n.name_any(), n);
                }
                Event::Delete(n) => {
                    self.dirty_nodes = true;
                    self.nodes.remove(&n.name_any());
                }
            },
        }
        Ok(())
    }

    /// The update for what is dirty (then clean again), and the trigger
    /// times it programs.
    fn take_update(
        &mut self,
        options: &KubeOptions,
        status: &SourceStatus,
    ) -> (SourceUpdate, Vec<SystemTime>) {
        let mut update = SourceUpdate::default();
        for key in std::mem::take(&mut self.dirty_services) {
            let Some(svc) = self.services.get(&key) else {
                update.services.insert(key, None);
                continue;
            };
            let slices: Vec<&EndpointSlice> = self
                .slices
                .get(&key)
                .into_iter()
                .flat_map(|m| m.values())
                .collect();
            match translate::translate_service(svc, &slices) {
                Ok(Translation::Service {
                    service,
                    endpoints,
                    notes,
                }) => {
                    for note in notes {
                        status.skipped("service", note.reason, &note.message);
                    }
                    update.services.insert(key, Some((service, endpoints)));
                }
                Ok(Translation::Ignored(reason)) => {
                    status.ignored(reason);
                    update.services.insert(key, None);
                }
                Err(skip) => {
                    // Whatever was stored for it stays: a bad change never removes good state.
                    status.skipped("service", skip.reason, &skip.message);
                }
            }
        }
        if std::mem::take(&mut self.dirty_nodes) {
            let nodes =
                translate::translate_nodes(self.nodes.values(), &options.node_name, options.vni);
            for (_, skip) in &nodes.skipped {
                status.skipped("node", skip.reason, &skip.message);
            }
            update.nodes = Some(nodes.peers);
            update.pod_subnet = nodes.pod_subnet;
        }
        status.objects(
            self.services.len(),
            self.slices.values().map(BTreeMap::len).sum(),
            self.nodes.len(),
        );
        (update, std::mem::take(&mut self.triggers))
    }
}

fn service_key(s: &KubeService) -> String {
    object_key(s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
}

fn slice_service(s: &EndpointSlice) -> Option<String> {
    let service = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(object_key(s.metadata.namespace.as_deref(), Some(service)))
}

fn trigger_time(s: &EndpointSlice) -> Option<SystemTime> {
    let text = s
        .metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_TIME_ANNOTATION)?;
    let t: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(t))
}

async fn run(
    client: Client,
    control: &Arc<SharedControl>,
    options: &KubeOptions,
    status: &SourceStatus,
) {
    let services = watcher(
        KubeApi::<KubeService>::all(client.clone()),
        watcher::Config::default(),
    );
    let slices = watcher(
        KubeApi::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    );
    let nodes = watcher(
        KubeApi::<Node>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut events = futures::stream::select_all([
        services.map(|e| Watched::Service(Box::new(e))).boxed(),
        slices.map(|e| Watched::Slice(Box::new(e))).boxed(),
        nodes.map(|e| Watched::Node(Box::new(e))).boxed(),
    ]);
    let mut cache = Cache::default();
    let mut last_sync = Instant::now() - options.min_sync_interval;
    let mut published_mac = false;
    loop {
        let due = last_sync + options.min_sync_interval;
        let sync_now = cache.ready() && cache.dirty();
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return };
                if let Err(e) = cache.apply(event, status) {
                    status.watch_error(&e);
                    tracing::warn!(error = %e, "Kubernetes source: watch failed; relisting");
                }
            }
            () = tokio::time::sleep_until(due.into()), if sync_now => {
                last_sync = Instant::now();
                let (update, triggers) = cache.take_update(options, status);
                sync(control, update, &triggers, status).await;
                if !published_mac {
                    published_mac = publish_vtep_mac(&client, control, options).await;
                }
            }
        }
    }
}

fn watcher<K>(
    api: KubeApi<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    // The backoff retries a failed list or watch; errors still come through, to count them.
    watcher::watcher(api, config).default_backoff()
}

/// Applies one update through the control plane (off the async threads:
/// it takes the control lock and may store to disk).
async fn sync(
    control: &Arc<SharedControl>,
    update: SourceUpdate,
    triggers: &[SystemTime],
    status: &SourceStatus,
) {
    let started = Instant::now();
    let control = Arc::clone(control);
    let result = tokio::task::spawn_blocking(move || control.lock().apply_source(update)).await;
    let elapsed = started.elapsed();
    match result {
        Ok(Ok(report)) => {
            for s in &report.skipped {
                status.skipped(s.kind, s.reason, &s.message);
            }
            let now = SystemTime::now();
            for t in triggers {
                status.programmed(now.duration_since(*t).unwrap_or_default());
            }
            status.synced(elapsed, report.generation, report.conntrack_flushed);
            if report.services_changed + report.services_removed > 0 || report.nodes_changed {
                tracing::debug!(
                    changed = report.services_changed,
                    removed = report.services_removed,
                    nodes = report.nodes_changed,
                    flushed = report.conntrack_flushed,
                    generation = report.generation,
                    elapsed_us = elapsed.as_micros() as u64,
                    "Kubernetes source: synced"
                );
            }
        }
        Ok(Err(e)) => {
            status.sync_failed(&e.to_string());
            tracing::warn!(error = %e, "Kubernetes source: sync failed; the last state stays");
        }
        Err(e) => status.sync_failed(&e.to_string()),
    }
}

/// Writes this node's VTEP MAC on its Node object, for the other nodes'
/// podswitchd; true once done (or when there is no overlay to announce).
async fn publish_vtep_mac(client: &Client, control: &SharedControl, options: &KubeOptions) -> bool {
    let Some(mac) = control
        .view()
        .snapshot()
        .overlay
        .as_ref()
        .map(|o| o.vtep_mac)
    else {
        return true;
    };
    let nodes = KubeApi::<Node>::all(client.clone());
    let patch = serde_json::json!({
        "metadata": { "annotations": { VTEP_MAC_ANNOTATION: mac.to_string() } }
    });
    match nodes
        .patch(
            &options.node_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(node = %options.node_name, error = %e, "Kubernetes source: cannot annotate this node with its VTEP MAC");
            false
        }
    }
}
