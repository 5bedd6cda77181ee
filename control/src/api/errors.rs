//! The API's errors: the one place where what went wrong becomes an HTTP
//! status and the documented body `{"error": "…"}` (docs/api.md, "Errors").
//!
//! The domain says what went wrong ([`ControlError`]); [`ApiError::from`]
//! picks the status for each kind. Refusals of the HTTP layer itself (a
//! body over the limit, 413; a path or query that does not decode, 400; …)
//! come from axum in plain text: [`json_errors`] rewrites every error
//! answer that is not JSON into the same body, keeping status and message.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ControlError;

/// An answer of the API that is an error: its HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client, naming the field and the value.
    pub message: String,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: a body or a path that does not decode.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500: the API itself failed (a task that did not finish).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// The status of each kind of domain error (docs/api.md, "Errors").
fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::Invalid { .. }
        | ControlError::Unknown { .. }
        | ControlError::Config(_)
        | ControlError::Device(_) => StatusCode::BAD_REQUEST,
        ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
        ControlError::Exists { .. }
        | ControlError::Taken { .. }
        | ControlError::FrontendTaken { .. }
        | ControlError::ListedTwice { .. }
        | ControlError::FileServiceClash { .. }
        | ControlError::Managed { .. }
        | ControlError::FromConfigFile { .. }
        | ControlError::InUse { .. }
        | ControlError::ServiceTable(_) => StatusCode::CONFLICT,
        ControlError::NotRunning(_) => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::Store(_) | ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        ApiError::new(status_of(&e), e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

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
    ApiError::new(status, message).into_response()
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
