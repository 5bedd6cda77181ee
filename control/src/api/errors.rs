//! The API's error body for refusals that come from the HTTP layer rather
//! than from a handler: a body over the limit (413), a path or query that
//! does not decode (400), … axum answers those in plain text; this layer
//! rewrites every error answer that is not JSON into the documented
//! `{"error": "…"}`, keeping its status and message.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::ApiError;

/// Longest plain-text message taken over from an answer (axum's are short).
const MAX_MESSAGE: usize = 4096;

/// Middleware: error answers that are not JSON become the API's JSON error.
/// `max_body` is the body limit in force, for the 413 message.
pub async fn json_errors(State(max_body): State<usize>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the request body is larger than {max_body} bytes, the most the API takes ({}); \
             split the change, e.g. apply services in parts with POST /v1/services",
            mib(max_body)
        )
    } else {
        let text = axum::body::to_bytes(response.into_body(), MAX_MESSAGE)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        }
    };
    ApiError {
        status: status.as_u16(),
        message,
    }
    .into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// `n` bytes as MiB for people.
fn mib(n: usize) -> String {
    format!("{:.0} MiB", n as f64 / f64::from(1u32 << 20))
}
