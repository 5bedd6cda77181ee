//! A real Kubernetes control plane on loopback for integration tests: etcd,
//! kube-apiserver and kube-controller-manager of one release, built from the
//! Go module proxy by `tests/k8s/build-control-plane.sh` and cached outside
//! the source tree.
//!
//! No kubelet runs: a test makes a Pod "ready" by writing its status itself
//! ([`ControlPlane::create_ready_pod`]), and the real EndpointSlice
//! controller then writes the slices a node agent would watch. By default
//! nothing needs root and every process listens on 127.0.0.1; with
//! [`Options::netns`] the processes run in a network namespace the test made,
//! the API server on [`Options::address`] there.
//!
//! The REST helpers ([`ControlPlane::get`], [`ControlPlane::create`], …, in
//! `k8s/rest.rs`) run `curl` rather than pulling an HTTP/TLS client into the
//! tests crate; [`ControlPlane::kubectl`] runs the `kubectl` the script
//! builds into the same cache (for `kubectl apply` of the manifests).
//!
//! ```no_run
//! use podswitch_tests::k8s::ControlPlane;
//! let cp = ControlPlane::start();
//! cp.create_namespace("demo").unwrap();
//! let ns = cp.get("/api/v1/namespaces/demo").unwrap();
//! assert_eq!(ns["metadata"]["name"], "demo");
//! ```

mod process;
mod rest;

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use process::{Process, command, free_ports, stop_all, tail, wait_healthy, wait_port_free};
use rest::curl_raw;

pub use rest::ApiError;

/// The service CIDR a control plane gets unless told otherwise.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";

/// The kube-controller-manager controllers run unless told otherwise: the
/// EndpointSlice controllers, and the garbage collector so that deleting a
/// Service deletes its slices as in a real cluster.
pub const DEFAULT_CONTROLLERS: &[&str] = &[
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "garbage-collector-controller",
];

/// How long kube-apiserver may take to report `/readyz` ok.
const APISERVER_READY_LIMIT: Duration = Duration::from_secs(60);
/// How long one readiness or health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one REST call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Lines of a log shown when a process fails to start.
const LOG_TAIL_LINES: usize = 40;

/// One control plane at a time per test process: each takes ~0.5 GB and
/// most of a core while it starts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What to start; [`Options::default`] is what [`ControlPlane::start`] uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--service-cluster-ip-range` of kube-apiserver.
    pub service_cidr: String,
    /// kube-controller-manager `--controllers`; empty runs no controller manager.
    pub controllers: Vec<String>,
    /// The address kube-apiserver listens on and advertises. On a loopback
    /// address the `kubernetes` Service gets no endpoints (the apiserver's
    /// endpoint reconciler refuses loopback, so it is off).
    pub address: Ipv4Addr,
    /// A named network namespace (`ip netns`) to run every process, and the
    /// helpers' curl, in (needs root); `None`: the caller's. Its loopback
    /// must be up: etcd and the controller manager listen there.
    pub netns: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            service_cidr: DEFAULT_SERVICE_CIDR.to_string(),
            controllers: DEFAULT_CONTROLLERS.iter().map(|c| c.to_string()).collect(),
            address: Ipv4Addr::LOCALHOST,
            netns: None,
        }
    }
}

/// etcd, kube-apiserver and kube-controller-manager, stopped on drop.
pub struct ControlPlane {
    // Drop::drop stops the processes before the fields, and so the guard, go.
    etcd: Process,
    apiserver: Process,
    controller_manager: Option<Process>,
    bin_dir: PathBuf,
    dir: PathBuf,
    options: Options,
    token: String,
    etcd_client_port: u16,
    etcd_peer_port: u16,
    api_port: u16,
    controller_manager_port: u16,
    apiserver_ready_time: Duration,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl ControlPlane {
    /// Builds the binaries if missing, then starts etcd, kube-apiserver (ready
    /// when this returns) and kube-controller-manager with [`Options::default`].
    pub fn start() -> ControlPlane {
        Self::start_with(Options::default())
    }

    /// As [`ControlPlane::start`] with `options`.
    pub fn start_with(options: Options) -> ControlPlane {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let bin_dir = binaries().clone();
        let dir = temp_dir();
        let token = random_hex(16);
        let local = Ipv4Addr::LOCALHOST;
        let ports = free_ports(
            options.netns.as_deref(),
            &[local, local, options.address, local],
        );

        write_file(
            &dir.join("tokens.csv"),
            &format!("{token},admin,admin-uid,\"system:masters\"\n"),
        );
        write_file(
            &dir.join("auth-header"),
            &format!("Authorization: Bearer {token}\n"),
        );
        write_file(
            &dir.join("kubeconfig"),
            &kubeconfig(&format!("https://{}:{}", options.address, ports[2]), &token),
        );
        openssl(&["genrsa", "-out", "sa.key", "2048"], &dir);
        openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], &dir);

        let etcd = Process::not_started("etcd", dir.join("etcd.log"));
        let apiserver = Process::not_started("kube-apiserver", dir.join("kube-apiserver.log"));
        let mut cp = ControlPlane {
            etcd,
            apiserver,
            controller_manager: None,
            bin_dir,
            dir,
            options,
            token,
            etcd_client_port: ports[0],
            etcd_peer_port: ports[1],
            api_port: ports[2],
            controller_manager_port: ports[3],
            apiserver_ready_time: Duration::ZERO,
            _one_at_a_time: guard,
        };
        cp.start_etcd();
        cp.start_apiserver();
        if !cp.options.controllers.is_empty() {
            cp.start_controller_manager();
        }
        cp
    }

    /// The API server's URL, `https://ADDRESS:PORT` (address 127.0.0.1 unless
    /// [`Options::address`] says otherwise).
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.options.address, self.api_port)
    }

    /// The bearer token of a user in `system:masters`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig file with the URL, the token and `insecure-skip-tls-verify`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The service CIDR (`--service-cluster-ip-range`).
    pub fn service_cidr(&self) -> &str {
        &self.options.service_cidr
    }

    /// The temporary directory holding logs, keys and etcd's data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long kube-apiserver took, at its last start, to report `/readyz` ok.
    pub fn apiserver_ready_time(&self) -> Duration {
        self.apiserver_ready_time
    }

    /// The last lines of a component's log (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`).
    pub fn log_tail(&self, component: &str) -> String {
        tail(&self.dir.join(format!("{component}.log")), LOG_TAIL_LINES)
    }

    /// The path of one of the built binaries (e.g. `kube-proxy`).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The cache's `kubectl` as the admin user, run where the control plane runs.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl {
            bin: self.binary("kubectl"),
            netns: self.options.netns.clone(),
            kubeconfig: self.kubeconfig_path(),
        }
    }

    /// Writes a kubeconfig for the user of bearer `token` (e.g. a service
    /// account's, from `kubectl create token`) named `name`; returns its path.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("kubeconfig-{name}"));
        write_file(&path, &kubeconfig(&self.url(), token));
        path
    }

    /// Kills kube-apiserver with SIGKILL and waits for it; etcd keeps the objects.
    pub fn stop_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts kube-apiserver (again) on the same port and etcd, and waits for `/readyz`.
    pub fn start_apiserver(&mut self) {
        assert!(
            !self.apiserver.running(),
            "kube-apiserver is already running"
        );
        let netns = self.options.netns.as_deref();
        let address = self.options.address;
        wait_port_free(netns, address, self.api_port, "kube-apiserver");
        let dir = &self.dir;
        let path = |name: &str| dir.join(name).display().to_string();
        let mut cmd = command(netns, self.bin_dir.join("kube-apiserver"));
        // The lease reconciler refuses a loopback address for the `kubernetes`
        // Service's endpoints.
        let reconciler = if address.is_loopback() {
            "none"
        } else {
            "lease"
        };
        cmd.args([
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_client_port),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--endpoint-reconciler-type={reconciler}"),
            format!("--secure-port={}", self.api_port),
            format!("--cert-dir={}", path("certs")),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            format!("--service-cluster-ip-range={}", self.options.service_cidr),
            // As kubeadm and kind set it: node agents (kube-proxy, CNI
            // daemons such as podswitch's DaemonSet) run privileged.
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ]);
        self.apiserver.spawn(cmd);
        let start = Instant::now();
        let header = self.dir.join("auth-header");
        let url = format!("{}/readyz", self.url());
        loop {
            self.apiserver.assert_running();
            let probe = curl_raw(netns, Some(&header), "GET", &url, None, None, PROBE_TIMEOUT);
            let last = match probe {
                Ok((200, body)) if body.trim() == "ok" => break,
                Ok((status, body)) => format!("HTTP {status}: {}", body.trim()),
                Err(e) => e,
            };
            if start.elapsed() > APISERVER_READY_LIMIT {
                panic!(
                    "kube-apiserver not ready after {:?} (last answer: {last}); log:\n{}",
                    APISERVER_READY_LIMIT,
                    self.apiserver.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.apiserver_ready_time = start.elapsed();
    }

    fn start_etcd(&mut self) {
        let netns = self.options.netns.as_deref();
        let local = Ipv4Addr::LOCALHOST;
        wait_port_free(netns, local, self.etcd_client_port, "etcd client");
        wait_port_free(netns, local, self.etcd_peer_port, "etcd peer");
        let client = format!("http://127.0.0.1:{}", self.etcd_client_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let mut cmd = command(netns, self.bin_dir.join("etcd"));
        cmd.args([
            "--name=default".to_string(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            "--unsafe-no-fsync".to_string(),
        ]);
        self.etcd.spawn(cmd);
        wait_healthy(
            netns,
            &mut self.etcd,
            &format!("{client}/health"),
            Duration::from_secs(20),
        );
    }

    fn start_controller_manager(&mut self) {
        let netns = self.options.netns.as_deref();
        let port = self.controller_manager_port;
        wait_port_free(netns, Ipv4Addr::LOCALHOST, port, "kube-controller-manager");
        let kubeconfig = self.kubeconfig_path().display().to_string();
        let mut cmd = command(netns, self.bin_dir.join("kube-controller-manager"));
        cmd.args([
            // No --authentication-kubeconfig: /healthz needs no authentication,
            // and with it the controller manager looks for a client CA
            // configmap this apiserver never writes, and logs so without end.
            format!("--kubeconfig={kubeconfig}"),
            format!("--controllers={}", self.options.controllers.join(",")),
            "--leader-elect=false".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.dir.join("kcm-certs").display()),
            "--profiling=false".to_string(),
        ]);
        let mut process = Process::not_started(
            "kube-controller-manager",
            self.dir.join("kube-controller-manager.log"),
        );
        process.spawn(cmd);
        let url = format!("https://127.0.0.1:{port}/healthz");
        // Stored first so that Drop stops it if the wait panics.
        let process = self.controller_manager.insert(process);
        wait_healthy(netns, process, &url, Duration::from_secs(30));
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // etcd last: it waits for its clients' connections to close.
        let mut clients: Vec<&mut Process> = vec![&mut self.apiserver];
        if let Some(p) = self.controller_manager.as_mut() {
            clients.push(p);
        }
        stop_all(clients);
        stop_all(vec![&mut self.etcd]);
        if std::thread::panicking() {
            eprintln!("control plane logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `kubectl` of the control plane's release with a kubeconfig, in the
/// control plane's network namespace; plain data, so it can go to a thread.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The binary.
    pub bin: PathBuf,
    /// The network namespace it runs in (`None`: the caller's).
    pub netns: Option<String>,
    /// The kubeconfig it is given.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// The same kubectl with another kubeconfig (another user).
    pub fn as_user(&self, kubeconfig: PathBuf) -> Kubectl {
        Kubectl {
            kubeconfig,
            ..self.clone()
        }
    }

    /// Runs `kubectl --kubeconfig K ARGS`, bounded by [`REQUEST_TIMEOUT`]; its output.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = command(self.netns.as_deref(), "timeout");
        cmd.arg(REQUEST_TIMEOUT.as_secs().to_string())
            .arg(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()))
    }

    /// As [`Kubectl::run`]; panics with stderr unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Calls `check` every 200 ms until it returns `Ok`, and returns that value;
/// panics after `limit` with `what` and the last error.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(e) if start.elapsed() > limit => panic!("{what}: not after {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The cache directory holding the binaries, built on first use (once per process).
fn binaries() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = crate::workspace().join("tests/k8s/build-control-plane.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stdout}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        for binary in ["kube-apiserver", "kubectl"] {
            assert!(
                dir.join(binary).is_file(),
                "{} printed {dir:?}, which holds no {binary}",
                script.display()
            );
        }
        dir
    })
}

/// A fresh directory under the system temp dir.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("podswitch-k8s-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn kubeconfig(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: podswitch-test\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: admin\n  user:\n    token: {token}\n\
         contexts:\n- name: podswitch-test\n  context:\n    cluster: podswitch-test\n    user: admin\n\
         current-context: podswitch-test\n"
    )
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `bytes` random bytes from /dev/urandom as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_server_and_token() {
        let text = kubeconfig("https://127.0.0.1:6443", "abc");
        assert!(text.contains("server: https://127.0.0.1:6443\n"));
        assert!(text.contains("token: abc\n"));
        assert!(text.contains("insecure-skip-tls-verify: true\n"));
    }
}
