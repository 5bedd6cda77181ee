use std::time::{Duration, Instant};

use super::*;
use crate::fake_api::{FakeApi, Reply};

/// The response the client parses from `raw` for `GET /v1/x`.
fn parse_raw(raw: &str) -> Result<ApiResponse, ClientError> {
    let api = FakeApi::start(vec![("GET /v1/x", Reply::Raw(raw.as_bytes().to_vec()))]);
    ApiClient::new(api.socket_path()).request("GET", "/v1/x", None)
}

fn bad_reason(result: Result<ApiResponse, ClientError>) -> String {
    match result {
        Err(ClientError::BadResponse { request, reason }) => {
            assert_eq!(request, "GET /v1/x");
            reason
        }
        other => panic!("expected a bad response, got {other:?}"),
    }
}

#[test]
fn body_by_content_length() {
    let response = parse_raw(
        "HTTP/1.1 200 OK\r\ncontent-TYPE: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\": true}\nTRAILING GARBAGE",
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.reason, "OK");
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(response.body, b"{\"ok\": true}\n");
}

#[test]
fn body_by_chunked_encoding() {
    let response = parse_raw(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response.body, b"hello, world");
}

#[test]
fn body_to_end_of_stream_without_framing() {
    let response = parse_raw("HTTP/1.0 503 Service Unavailable\nX-A: 1\n\nnot forwarding").unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-a"), Some("1"));
    assert_eq!(response.body, b"not forwarding");
}

#[test]
fn no_content_has_no_body() {
    let response = parse_raw("HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
}

#[test]
fn interim_responses_are_skipped() {
    let response = parse_raw(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.body, b"{}");
}

#[test]
fn malformed_status_lines_are_rejected() {
    for raw in [
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
    ] {
        let reason = bad_reason(parse_raw(raw));
        assert!(
            reason.starts_with("malformed status line"),
            "{raw:?}: {reason}"
        );
    }
}

#[test]
fn malformed_headers_are_rejected() {
    let reason = bad_reason(parse_raw("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"));
    assert!(reason.starts_with("malformed header line"), "{reason}");
    let reason = bad_reason(parse_raw("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"));
    assert_eq!(reason, "bad Content-Length \"-1\"");
    let reason = bad_reason(parse_raw(
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    ));
    assert_eq!(reason, "bad Content-Length \"1, 2\"");
}

#[test]
fn truncated_responses_are_rejected() {
    let reason = bad_reason(parse_raw(
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\":",
    ));
    assert_eq!(reason, "body ended after 5 of 10 bytes (Content-Length)");
    let reason = bad_reason(parse_raw(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ));
    assert_eq!(reason, "chunk ended early (of 5 bytes)");
    let reason = bad_reason(parse_raw(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ));
    assert_eq!(reason, "connection closed before the last chunk");
    let reason = bad_reason(parse_raw(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ));
    assert_eq!(reason, "bad chunk size line \"zz\"");
    let reason = bad_reason(parse_raw("HTTP/1.1 200 OK\r\nContent-Le"));
    assert_eq!(reason, "connection closed in the middle of the header");
    let reason = bad_reason(parse_raw(""));
    assert_eq!(reason, "connection closed before a status line");
}

#[test]
fn request_carries_host_length_and_close() {
    let api = FakeApi::start(vec![(
        "POST /v1/ports",
        Reply::json(201, r#"{"name":"a"}"#),
    )]);
    let client = ApiClient::new(api.socket_path());
    let stored = client
        .send_json(
            "POST",
            "/v1/ports",
            &serde_json::json!({"name": "a", "kind": "tap"}),
        )
        .unwrap();
    assert_eq!(stored, Some(serde_json::json!({"name": "a"})));
    let requests = api.requests();
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/ports")
    );
    assert_eq!(request.version, "HTTP/1.1");
    assert_eq!(request.header("host"), Some("podswitchd"));
    assert_eq!(request.header("connection"), Some("close"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("content-length"),
        Some(request.body.len().to_string().as_str())
    );
    assert_eq!(
        request.json(),
        serde_json::json!({"name": "a", "kind": "tap"})
    );
}

#[test]
fn get_sends_no_content_length() {
    let api = FakeApi::start(vec![("GET /v1/health", Reply::json(200, "{}"))]);
    ApiClient::new(api.socket_path())
        .get_json("/v1/health")
        .unwrap();
    assert_eq!(api.requests()[0].header("content-length"), None);
}

#[test]
fn error_status_carries_the_server_message_unchanged() {
    let message = "services[3].ports[0].port = 70000: must be 1 to 65535";
    let api = FakeApi::start(vec![("GET /v1/services", Reply::error(400, message))]);
    match ApiClient::new(api.socket_path()).get_json("/v1/services") {
        Err(e @ ClientError::Api { status: 400, .. }) => assert_eq!(e.to_string(), message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn error_message_without_an_error_body() {
    let response = ApiResponse {
        status: 502,
        reason: "Bad Gateway".to_string(),
        headers: Vec::new(),
        body: b"upstream down\n".to_vec(),
    };
    assert_eq!(
        response.error_message(),
        "HTTP 502 Bad Gateway: upstream down"
    );
    let empty = ApiResponse {
        body: Vec::new(),
        reason: String::new(),
        ..response
    };
    assert_eq!(empty.error_message(), "HTTP 502");
}

#[test]
fn non_json_success_body_is_a_bad_response() {
    let api = FakeApi::start(vec![("GET /v1/x", Reply::text("hello"))]);
    let reason = bad_reason(
        ApiClient::new(api.socket_path())
            .get_json("/v1/x")
            .map(|_| {
                unreachable!("not JSON");
            }),
    );
    assert!(reason.starts_with("body is not JSON"), "{reason}");
}

#[test]
fn delete_answers_none_on_no_content() {
    let api = FakeApi::start(vec![("DELETE /v1/ports/a", Reply::empty(204))]);
    let answer = ApiClient::new(api.socket_path())
        .send_empty("DELETE", "/v1/ports/a")
        .unwrap();
    assert_eq!(answer, None);
}

#[test]
fn stalled_server_times_out() {
    let api = FakeApi::start(vec![(
        "GET /v1/x",
        Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab".to_vec()),
    )]);
    let client = ApiClient::new(api.socket_path()).with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let error = client.request("GET", "/v1/x", None).unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert_eq!(error.to_string(), "no response to GET /v1/x within 0.2 s");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn connect_error_names_the_socket() {
    let error = ApiClient::new("/nonexistent/podswitch/api.sock")
        .request("GET", "/v1/health", None)
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }));
    assert_eq!(
        error.to_string(),
        "connect to /nonexistent/podswitch/api.sock (is podswitchd running?)"
    );
}

#[test]
fn segments_are_percent_encoded() {
    assert_eq!(segment("pod-a_1.x~"), "pod-a_1.x~");
    assert_eq!(segment("a/b c"), "a%2Fb%20c");
    assert_eq!(segment("ü"), "%C3%BC");
    assert_eq!(segment("%"), "%25");
}

#[test]
fn unsafe_paths_are_refused_before_connecting() {
    let client = ApiClient::new("/nonexistent.sock");
    for path in ["/v1/ports/a b", "/v1/x\r\nEvil: 1", "v1/ports", "/v1/ü"] {
        let error = client.request("GET", path, None).unwrap_err();
        assert!(
            matches!(error, ClientError::InvalidPath { .. }),
            "{path:?}: {error:?}"
        );
    }
}
