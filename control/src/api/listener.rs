//! The API's socket: a Unix listener that serves root only (docs/api.md:
//! non-root peers get `403` and are closed).

use std::path::Path;

/// A Unix listener that serves root peers only: others get `403` and are closed.
pub struct RootOnlyListener {
    inner: tokio::net::UnixListener,
}

impl RootOnlyListener {
    /// Binds `path` (replacing a stale socket file) with mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<RootOnlyListener> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let inner = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(RootOnlyListener { inner })
    }
}

impl axum::serve::Listener for RootOnlyListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if stream.peer_cred().is_ok_and(|c| c.uid() == 0) {
                        return (stream, addr);
                    }
                    tokio::spawn(refuse(stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "API socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

async fn refuse(mut stream: tokio::net::UnixStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":"the podswitch API is for root only"}"#;
    let msg = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(msg.as_bytes()).await;
    let _ = stream.shutdown().await;
}
