//! A scripted stand-in for podswitchd's API socket, for tests of the client
//! and of `podswitchctl` without a daemon.
//!
//! It listens on a Unix socket in a fresh temporary directory, records every
//! request (request line, headers, body) and answers each from a table of
//! canned replies keyed by method and path; anything else gets the 404 the
//! real server would give. Replies can also be raw bytes, to feed the client
//! malformed or truncated responses.
//!
//! ```
//! use podswitch_control::client::ApiClient;
//! use podswitch_control::fake_api::{FakeApi, Reply};
//!
//! let api = FakeApi::start(vec![
//!     ("GET /v1/health", Reply::json(200, r#"{"forwarding": true, "workers": 2, "generation": 7}"#)),
//! ]);
//! let health = ApiClient::new(api.socket_path()).get_json("/v1/health").unwrap();
//! assert_eq!(health["workers"], 2);
//! assert_eq!(api.requests()[0].path, "/v1/health");
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the fake server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A well-formed response with `Content-Length`.
    Response {
        /// Status code.
        status: u16,
        /// `Content-Type` (none when the body is empty).
        content_type: &'static str,
        /// The body.
        body: Vec<u8>,
    },
    /// These bytes verbatim, then the connection is closed.
    Raw(Vec<u8>),
    /// These bytes verbatim, then the connection is held open without
    /// another byte until the server stops (to test client timeouts).
    Stall(Vec<u8>),
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Response {
            status,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
        }
    }

    /// `status` with the API's error body, `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = serde_json::json!({ "error": message }).to_string();
        Reply::json(status, &body)
    }

    /// `status` with no body (e.g. `204`).
    pub fn empty(status: u16) -> Reply {
        Reply::Response {
            status,
            content_type: "",
            body: Vec::new(),
        }
    }

    /// `200` with a plain-text body.
    pub fn text(body: &str) -> Reply {
        Reply::Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: body.as_bytes().to_vec(),
        }
    }

    fn write_to(&self, stream: &mut UnixStream) {
        let bytes = match self {
            Reply::Response {
                status,
                content_type,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reason_phrase(*status),
                    body.len()
                );
                if !content_type.is_empty() {
                    head.push_str(&format!("Content-Type: {content_type}\r\n"));
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(body);
                bytes
            }
            Reply::Raw(bytes) | Reply::Stall(bytes) => bytes.clone(),
        };
        let _ = stream.write_all(&bytes);
    }
}

/// One request as the fake server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target as sent (still percent-encoded).
    pub path: String,
    /// The HTTP version of the request line, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics if it is not: this is for tests).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A running fake API server; stops and removes its directory when dropped.
pub struct FakeApi {
    dir: PathBuf,
    socket_path: PathBuf,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Starts a server answering `"METHOD /path"` with its reply. A route
    /// listed more than once answers its replies in turn (the last one repeats).
    pub fn start(routes: Vec<(&str, Reply)>) -> FakeApi {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "podswitch-fake-api-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the fake API's temporary directory");
        let socket_path = dir.join("api.sock");
        let listener = UnixListener::bind(&socket_path).expect("bind the fake API socket");
        let routes: Vec<(String, Reply)> = routes
            .into_iter()
            .map(|(route, reply)| (route.to_string(), reply))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            move || serve(&listener, &routes, &requests, &stop)
        });
        FakeApi {
            dir,
            socket_path,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The socket to connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The server's temporary directory (removed when it stops), for test files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket_path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(
    listener: &UnixListener,
    routes: &[(String, Reply)],
    requests: &Mutex<Vec<RecordedRequest>>,
    stop: &AtomicBool,
) {
    let mut stalled = Vec::new();
    let mut answered = vec![0usize; routes.len()];
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let Some(request) = read_request(&stream) else {
            continue;
        };
        let key = format!("{} {}", request.method, request.path);
        if let Ok(mut requests) = requests.lock() {
            requests.push(request);
        }
        let matching: Vec<usize> = (0..routes.len()).filter(|&i| routes[i].0 == key).collect();
        let reply = match matching.as_slice() {
            [] => Reply::error(404, &format!("no such path: {key}")),
            indexes => {
                let turn = answered[indexes[0]].min(indexes.len() - 1);
                answered[indexes[0]] += 1;
                routes[indexes[turn]].1.clone()
            }
        };
        reply.write_to(&mut stream);
        if matches!(reply, Reply::Stall(_)) {
            stalled.push(stream);
        }
    }
}

fn read_request(stream: &UnixStream) -> Option<RecordedRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut request = RecordedRequest {
        method: method.to_string(),
        path: path.to_string(),
        version: version.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        request
            .headers
            .push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = request
        .header("content-length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    request.body = body;
    Some(request)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}
