//! A small synchronous HTTP/1.1 client for the podswitchd control API.
//!
//! The API is HTTP/1.1 over a Unix socket (`docs/api.md`). `podswitchctl`
//! sends one request per connection and waits for the answer, so a blocking
//! `UnixStream` with a read/write timeout is all it needs; an async runtime
//! and a general HTTP stack (tokio, hyper) would be most of the binary for
//! no gain. Written by hand, it covers exactly what a client of that server
//! needs: `Connection: close` requests with a `Content-Length` body, and
//! responses framed by `Content-Length`, chunked transfer encoding, or the
//! end of the connection.
//!
//! ```no_run
//! use podswitch_control::client::ApiClient;
//!
//! let client = ApiClient::new("/run/podswitch/api.sock");
//! let health = client.get_json("/v1/health")?;
//! println!("forwarding: {}", health["forwarding"]);
//! # Ok::<(), podswitch_control::client::ClientError>(())
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a request may wait for the socket by default (each read or write).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest status line or header line accepted from the server.
const MAX_LINE_LEN: usize = 16 * 1024;

/// Most header lines accepted in one response.
const MAX_HEADERS: usize = 100;

/// Largest response body accepted: as large as the requests the daemon
/// takes (`GET /v1/services` of 100,000 services is about 80 MB).
const MAX_BODY_LEN: usize = crate::api::MAX_BODY;

/// Why a request failed. The message names the step.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be opened.
    #[error("connect to {path} (is podswitchd running?)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The socket (mode 0600, owned by root) refused this user.
    #[error("{path} is for root only (run as root, e.g. with sudo)")]
    RootOnly {
        /// The socket path.
        path: PathBuf,
        /// The OS error (permission denied).
        #[source]
        source: io::Error,
    },
    /// The path given to `request` is not a valid request target.
    #[error(
        "invalid request path {path:?}: use ASCII and percent-encode segments (see client::segment)"
    )]
    InvalidPath {
        /// The path as given.
        path: String,
    },
    /// Sending the request failed.
    #[error("write request {request}")]
    Write {
        /// Method and path.
        request: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Receiving the response failed.
    #[error("read response to {request}")]
    Read {
        /// Method and path.
        request: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("no response to {request} within {} s", timeout.as_secs_f64())]
    Timeout {
        /// Method and path.
        request: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The response is not valid HTTP/1.1 (or not the JSON a helper expected).
    #[error("bad response to {request}: {reason}")]
    BadResponse {
        /// Method and path.
        request: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The request body could not be encoded as JSON.
    #[error("encode the body of {request} as JSON")]
    Encode {
        /// Method and path.
        request: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The server answered with an error status; the message is the server's, unchanged.
    #[error("{message}")]
    Api {
        /// The HTTP status (4xx or 5xx).
        status: u16,
        /// The server's `error` message (or the status and body when there is none).
        message: String,
    },
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The reason phrase of the status line (may be empty).
    pub reason: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked encoding removed.
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The message to show for an error response: the server's `error`
    /// field unchanged, or the status and whatever the body says.
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&self.body) {
            return body.error;
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let status = format!("HTTP {} {}", self.status, self.reason);
        let status = status.trim_end();
        if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        }
    }
}

/// A client of one podswitchd API socket. Cheap to create; every request
/// opens its own connection.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket_path: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    /// Connects to the socket; a permission error says the socket is root's.
    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket_path).map_err(|source| {
            let path = self.socket_path.clone();
            if source.kind() == io::ErrorKind::PermissionDenied {
                ClientError::RootOnly { path, source }
            } else {
                ClientError::Connect { path, source }
            }
        })
    }

    /// A client of the socket at `socket_path`, with the default timeout.
    pub fn new(socket_path: impl Into<PathBuf>) -> ApiClient {
        ApiClient {
            socket_path: socket_path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another timeout for each read and write.
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Sends `method path` with an optional `(content type, body)` and
    /// returns the response whatever its status. `path` must already be
    /// percent-encoded where needed (see [`segment`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<ApiResponse, ClientError> {
        if !is_valid_target(path) || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ClientError::InvalidPath {
                path: format!("{method} {path}"),
            });
        }
        let request = format!("{method} {path}");
        let stream = self.connect()?;
        let timeouts = stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)));
        if let Err(source) = timeouts {
            return Err(ClientError::Connect {
                path: self.socket_path.clone(),
                source,
            });
        }
        let head = request_head(method, path, body.map(|(ct, b)| (ct, b.len())));
        let written = (&stream)
            .write_all(head.as_bytes())
            .and_then(|()| (&stream).write_all(body.map_or(&[][..], |(_, b)| b)))
            .and_then(|()| (&stream).flush());
        if let Err(source) = written {
            // A server that refuses a request early (say, 403 before reading
            // the body) answers and closes; its answer beats the EPIPE.
            if matches!(
                source.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) && let Ok(response) = read_response(&stream, method, &request, self.timeout)
            {
                return Ok(response);
            }
            return Err(self.io_error(request, source, false));
        }
        read_response(&stream, method, &request, self.timeout)
    }

    /// `GET path`, expecting 2xx with a JSON body. An error status becomes
    /// [`ClientError::Api`] with the server's message.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let response = self.request("GET", path, None)?;
        json_body(response, &format!("GET {path}"))
    }

    /// `method path` with `body` as JSON, expecting 2xx. Returns the JSON
    /// answer, or `None` when the body is empty (`204 No Content`).
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let request = format!("{method} {path}");
        let bytes = serde_json::to_vec(body).map_err(|source| ClientError::Encode {
            request: request.clone(),
            source,
        })?;
        let response = self.request(method, path, Some(("application/json", &bytes)))?;
        optional_json_body(response, &request)
    }

    /// `method path` without a body (e.g. `DELETE`), expecting 2xx; like
    /// [`send_json`](Self::send_json) otherwise.
    pub fn send_empty(
        &self,
        method: &str,
        path: &str,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let response = self.request(method, path, None)?;
        optional_json_body(response, &format!("{method} {path}"))
    }

    /// `method path` with `body` as JSON, for an endpoint whose answer is a
    /// stream (`POST /v1/capture`): the body is copied to `out` as it
    /// arrives until the server ends it; returns the bytes copied. Only the
    /// response head is subject to the timeout.
    pub fn stream_json(
        &self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let request = format!("{method} {path}");
        let bytes = serde_json::to_vec(body).map_err(|source| ClientError::Encode {
            request: request.clone(),
            source,
        })?;
        let stream = self.connect()?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|source| ClientError::Connect {
                path: self.socket_path.clone(),
                source,
            })?;
        let head = request_head(method, path, Some(("application/json", bytes.len())));
        (&stream)
            .write_all(head.as_bytes())
            .and_then(|()| (&stream).write_all(&bytes))
            .map_err(|e| self.io_error(request.clone(), e, false))?;
        stream_response(&stream, &request, self.timeout, out)
    }

    fn io_error(&self, request: String, source: io::Error, reading: bool) -> ClientError {
        io_error(request, source, reading, self.timeout)
    }
}

/// Fails with [`ClientError::Api`] unless the response is 2xx.
pub fn check_status(response: ApiResponse) -> Result<ApiResponse, ClientError> {
    if response.is_success() {
        Ok(response)
    } else {
        Err(ClientError::Api {
            status: response.status,
            message: response.error_message(),
        })
    }
}

fn json_body(response: ApiResponse, request: &str) -> Result<serde_json::Value, ClientError> {
    optional_json_body(response, request)?.ok_or_else(|| ClientError::BadResponse {
        request: request.to_string(),
        reason: "empty body where JSON was expected".to_string(),
    })
}

fn optional_json_body(
    response: ApiResponse,
    request: &str,
) -> Result<Option<serde_json::Value>, ClientError> {
    let response = check_status(response)?;
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&response.body)
        .map(Some)
        .map_err(|e| ClientError::BadResponse {
            request: request.to_string(),
            reason: format!("body is not JSON: {e}"),
        })
}

/// Percent-encodes one path segment: every byte but the unreserved
/// characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so a `/`
/// or a space inside a name cannot change the path.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_valid_target(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}

fn request_head(method: &str, path: &str, body: Option<(&str, usize)>) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: podswitchd\r\nUser-Agent: podswitchctl/{}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    match body {
        Some((content_type, len)) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {len}\r\n"
            ));
        }
        // RFC 9110: no Content-Length on a bodiless GET/DELETE, but methods
        // that expect content say explicitly that there is none.
        None if matches!(method, "POST" | "PUT" | "PATCH") => {
            head.push_str("Content-Length: 0\r\n");
        }
        None => {}
    }
    head.push_str("\r\n");
    head
}

fn io_error(request: String, source: io::Error, reading: bool, timeout: Duration) -> ClientError {
    match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ClientError::Timeout { request, timeout }
        }
        _ if reading => ClientError::Read { request, source },
        _ => ClientError::Write { request, source },
    }
}

/// Reads and parses one response from `stream`.
fn read_response(
    stream: &UnixStream,
    method: &str,
    request: &str,
    timeout: Duration,
) -> Result<ApiResponse, ClientError> {
    let mut reader = ResponseReader {
        inner: BufReader::new(stream),
        request,
        timeout,
    };
    loop {
        let response = reader.read_head()?;
        // 1xx answers are interim (100 Continue); the real one follows.
        if (100..200).contains(&response.status) {
            continue;
        }
        return reader.read_body(response, method);
    }
}

/// Parses a response from any byte stream (the socket, or a test fixture).
struct ResponseReader<'a, R> {
    inner: BufReader<R>,
    request: &'a str,
    timeout: Duration,
}

impl<R: Read> ResponseReader<'_, R> {
    fn bad(&self, reason: impl Into<String>) -> ClientError {
        ClientError::BadResponse {
            request: self.request.to_string(),
            reason: reason.into(),
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        io_error(self.request.to_string(), source, true, self.timeout)
    }

    /// One CRLF- (or LF-) terminated line without its terminator; `None` at EOF.
    fn read_line(&mut self, what: &str) -> Result<Option<String>, ClientError> {
        let mut line = Vec::new();
        let read = (&mut self.inner)
            .take(MAX_LINE_LEN as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io(e))?;
        if read == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_LINE_LEN {
                self.bad(format!("{what} longer than {MAX_LINE_LEN} bytes"))
            } else {
                self.bad(format!("connection closed in the middle of the {what}"))
            });
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| self.bad(format!("{what} is not UTF-8")))
    }

    /// The status line and the header fields.
    fn read_head(&mut self) -> Result<ApiResponse, ClientError> {
        let Some(line) = self.read_line("status line")? else {
            return Err(self.bad("connection closed before a status line"));
        };
        let (status, reason) = parse_status_line(&line)
            .ok_or_else(|| self.bad(format!("malformed status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let Some(line) = self.read_line("header")? else {
                return Err(self.bad("connection closed in the headers"));
            };
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(self.bad(format!("more than {MAX_HEADERS} header fields")));
            }
            let (name, value) = line
                .split_once(':')
                .filter(|(name, _)| !name.is_empty() && !name.contains([' ', '\t']))
                .ok_or_else(|| self.bad(format!("malformed header line {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(ApiResponse {
            status,
            reason: reason.to_string(),
            headers,
            body: Vec::new(),
        })
    }

    /// The body after `head`, framed as its headers say.
    fn read_body(
        &mut self,
        mut head: ApiResponse,
        method: &str,
    ) -> Result<ApiResponse, ClientError> {
        if method == "HEAD" || head.status == 204 || head.status == 304 {
            return Ok(head);
        }
        let chunked = head.header("transfer-encoding").is_some_and(|te| {
            te.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
        head.body = if chunked {
            self.read_chunked()?
        } else if let Some(length) = head.header("content-length") {
            let length = parse_content_length(length)
                .ok_or_else(|| self.bad(format!("bad Content-Length {length:?}")))?;
            self.read_exact_body(length)?
        } else {
            self.read_to_end()?
        };
        Ok(head)
    }

    fn read_exact_body(&mut self, length: usize) -> Result<Vec<u8>, ClientError> {
        if length > MAX_BODY_LEN {
            return Err(self.bad(format!(
                "Content-Length {length} is over the {MAX_BODY_LEN}-byte limit"
            )));
        }
        let mut body = Vec::with_capacity(length);
        let read = (&mut self.inner)
            .take(length as u64)
            .read_to_end(&mut body)
            .map_err(|e| self.io(e))?;
        if read < length {
            return Err(self.bad(format!(
                "body ended after {read} of {length} bytes (Content-Length)"
            )));
        }
        Ok(body)
    }

    fn read_to_end(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        (&mut self.inner)
            .take(MAX_BODY_LEN as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.io(e))?;
        if body.len() > MAX_BODY_LEN {
            return Err(self.bad(format!("body over the {MAX_BODY_LEN}-byte limit")));
        }
        Ok(body)
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        self.read_chunks(|bad, chunk| {
            if body.len() + chunk.len() > MAX_BODY_LEN {
                return Err(bad(format!("body over the {MAX_BODY_LEN}-byte limit")));
            }
            body.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(body)
    }

    /// Reads a chunked body, handing each chunk to `each` as it arrives
    /// (with a constructor for "bad response" errors).
    fn read_chunks(
        &mut self,
        mut each: impl FnMut(&dyn Fn(String) -> ClientError, &[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        loop {
            let Some(line) = self.read_line("chunk size line")? else {
                return Err(self.bad("connection closed before the last chunk"));
            };
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .ok()
                .filter(|_| !size_text.starts_with(['+', '-']))
                .ok_or_else(|| self.bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                break;
            }
            let chunk = self.read_exact_body(size).map_err(|e| match e {
                ClientError::BadResponse { .. } => {
                    self.bad(format!("chunk ended early (of {size} bytes)"))
                }
                other => other,
            })?;
            each(&|reason| self.bad(reason), &chunk)?;
            match self.read_line("chunk end")? {
                Some(rest) if rest.is_empty() => {}
                _ => return Err(self.bad("chunk data not followed by CRLF")),
            }
        }
        // Trailer fields, up to the empty line (or EOF: the server closes).
        while let Some(line) = self.read_line("trailer")? {
            if line.is_empty() {
                break;
            }
        }
        Ok(())
    }
}

/// Copies a streamed 2xx body to `out` as it arrives, flushing after each
/// piece; an error status becomes [`ClientError::Api`]. `out` failing (the
/// reader of a pipe went away) ends the copy quietly.
fn stream_response(
    stream: &UnixStream,
    request: &str,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<u64, ClientError> {
    let mut reader = ResponseReader {
        inner: BufReader::new(stream),
        request,
        timeout,
    };
    let head = loop {
        let head = reader.read_head()?;
        if !(100..200).contains(&head.status) {
            break head;
        }
    };
    if !head.is_success() {
        check_status(reader.read_body(head, "POST")?)?;
        return Ok(0);
    }
    // The body runs as long as the capture: no read timeout from here on.
    stream.set_read_timeout(None).map_err(|e| reader.io(e))?;
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let mut written = 0u64;
    let mut out_closed = false;
    let mut write = |data: &[u8]| {
        if !out_closed {
            match out.write_all(data).and_then(|()| out.flush()) {
                Ok(()) => written += data.len() as u64,
                Err(_) => out_closed = true,
            }
        }
        !out_closed
    };
    if chunked {
        let result = reader.read_chunks(|_, chunk| {
            if write(chunk) {
                Ok(())
            } else {
                Err(ClientError::Write {
                    request: "output".to_string(),
                    source: io::Error::from(io::ErrorKind::BrokenPipe),
                })
            }
        });
        match result {
            Ok(()) | Err(ClientError::Write { .. }) => {}
            Err(e) => return Err(e),
        }
    } else {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.inner.read(&mut buf).map_err(|e| reader.io(e))?;
            if n == 0 || !write(&buf[..n]) {
                break;
            }
        }
    }
    Ok(written)
}

/// `HTTP/1.x NNN reason` → (NNN, reason).
fn parse_status_line(line: &str) -> Option<(u16, &str)> {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status = code.parse().ok()?;
    (100..600).contains(&status).then_some((status, reason))
}

fn parse_content_length(value: &str) -> Option<usize> {
    // Repeated identical values ("12, 12") are allowed by RFC 9110.
    let mut values = value.split(',').map(str::trim);
    let first = values.next()?;
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    values.all(|v| v == first).then(|| first.parse().ok())?
}

#[cfg(test)]
mod tests;
