//! What every `podswitchctl` handler shares: the client, the output
//! format, and the requests and printing they all make.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::render::{Table, describe, pretty_json};
use super::{Failure, Output};
use crate::client::{ApiClient, ApiResponse, ClientError, check_status};

/// What every handler needs.
pub(super) struct Ctx<'a> {
    pub client: ApiClient,
    pub output: Output,
    pub out: &'a mut dyn Write,
}

pub(super) fn not_api(request: &str, reason: impl Into<String>) -> Failure {
    Failure::Unreachable(ClientError::BadResponse {
        request: request.to_string(),
        reason: reason.into(),
    })
}

impl Ctx<'_> {
    /// `GET path`, failing unless 2xx.
    pub(super) fn get(&self, path: &str) -> Result<ApiResponse, Failure> {
        Ok(check_status(self.client.request("GET", path, None)?)?)
    }

    /// Prints a JSON body pretty-printed (in the server's key order).
    pub(super) fn print_json(&mut self, body: &[u8], request: &str) -> Result<(), Failure> {
        let text =
            pretty_json(body).map_err(|e| not_api(request, format!("body is not JSON: {e}")))?;
        writeln!(self.out, "{text}")?;
        Ok(())
    }

    /// `GET path` → `{key: [...]}`: the JSON, or a table of the items.
    pub(super) fn list(
        &mut self,
        path: &str,
        key: &str,
        table: fn(&[Value]) -> Table,
    ) -> Result<(), Failure> {
        let request = format!("GET {path}");
        let response = self.get(path)?;
        if self.output == Output::Json {
            return self.print_json(&response.body, &request);
        }
        let body = parse_json(&response.body, &request)?;
        let items = body
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| not_api(&request, format!("no {key:?} list in the answer")))?;
        if items.is_empty() {
            writeln!(self.out, "no {key}")?;
        } else {
            write!(self.out, "{}", table(items).render(0))?;
        }
        Ok(())
    }

    /// `GET path` → one object: the JSON, or a `key: value` listing.
    pub(super) fn show(&mut self, path: &str) -> Result<(), Failure> {
        let request = format!("GET {path}");
        let response = self.get(path)?;
        if self.output == Output::Json {
            return self.print_json(&response.body, &request);
        }
        let body = parse_json(&response.body, &request)?;
        write!(self.out, "{}", describe(&body))?;
        Ok(())
    }

    /// A change: `method path` with `body` as JSON. Prints the server's
    /// answer with `-o json`, else `done`.
    pub(super) fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &impl Serialize,
        done: &str,
    ) -> Result<(), Failure> {
        let request = format!("{method} {path}");
        let bytes = serde_json::to_vec(body).map_err(|source| ClientError::Encode {
            request: request.clone(),
            source,
        })?;
        let response = self
            .client
            .request(method, path, Some(("application/json", &bytes)))?;
        self.finish_change(response, &request, done)
    }

    /// `DELETE path`; prints like [`send`](Self::send).
    pub(super) fn delete(&mut self, path: &str, done: &str) -> Result<(), Failure> {
        let response = self.client.request("DELETE", path, None)?;
        self.finish_change(response, &format!("DELETE {path}"), done)
    }

    pub(super) fn finish_change(
        &mut self,
        response: ApiResponse,
        request: &str,
        done: &str,
    ) -> Result<(), Failure> {
        let response = check_status(response)?;
        let empty = response.body.iter().all(u8::is_ascii_whitespace);
        match self.output {
            Output::Json if !empty => self.print_json(&response.body, request)?,
            Output::Json => {}
            Output::Table => writeln!(self.out, "{done}")?,
        }
        Ok(())
    }
}

pub(super) fn parse_json(body: &[u8], request: &str) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| not_api(request, format!("body is not JSON: {e}")))
}

/// The command-line spelling of a value (`pre-nat`), which is the API's.
pub(super) fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}
