//! Decoding the declarative apply document (`PUT /v1/state`) one object at
//! a time.
//!
//! A document of 100,000 services is about 80 MB of JSON; as a
//! `serde_json::Value` tree it took over a gigabyte, and the allocator kept
//! much of that after it was freed. Here the body is read in one pass: each
//! service, route and node becomes a small value tree of its own, which is
//! turned into its typed form (with the same field paths in errors as
//! before, e.g. `services[3].ports[0].port`) and dropped before the next.
//! A TOML body, small by nature, is read into a value tree first and then
//! walked the same way.
//!
//! Services in JSON take a faster road (see [`services`]): the list is
//! split into each service's text, and the services are decoded straight
//! into their types on every core; only a service that does not decode
//! goes the value-tree way, which words its error with the field path.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::ApiError;
use crate::state::ApplyDocument;

mod services;

/// The document in a JSON body.
pub fn from_json(body: &[u8]) -> Result<ApplyDocument, ApiError> {
    let failure = RefCell::new(Failure::default());
    let mut input = serde_json::Deserializer::from_slice(body);
    let doc = decode(&mut input, &failure, true)
        .and_then(|doc| input.end().map(|()| doc))
        .map_err(|e| explain(e, &failure))?;
    Ok(doc)
}

/// The document as a value tree (a TOML body).
pub fn from_value(value: Value) -> Result<ApplyDocument, ApiError> {
    let failure = RefCell::new(Failure::default());
    decode(value, &failure, false).map_err(|e| explain(e, &failure))
}

/// Why decoding stopped: a typed object failed with its field path, a list
/// was not a list, or the JSON itself is malformed.
#[derive(Default)]
struct Failure {
    /// The first object that did not decode, with its message.
    object: Option<ApiError>,
    /// The key whose value was being read.
    key: Option<String>,
}

/// Decodes the document from `input`; `json_text` says that `input`
/// reads JSON text (whose services can then be split without decoding).
fn decode<'de, D: Deserializer<'de>>(
    input: D,
    failure: &RefCell<Failure>,
    json_text: bool,
) -> Result<ApplyDocument, D::Error> {
    input.deserialize_map(DocumentVisitor { failure, json_text })
}

/// The API error for a decoding error `e`.
fn explain(e: serde_json::Error, failure: &RefCell<Failure>) -> ApiError {
    let failure = failure.take();
    if let Some(object) = failure.object {
        return object;
    }
    if e.is_syntax() || e.is_eof() || e.is_io() {
        return ApiError::bad_request(format!("invalid JSON body: {e}"));
    }
    match failure.key {
        Some(key) => ApiError::bad_request(format!("invalid body: {key}: must be a list")),
        None => ApiError::bad_request(
            "invalid body: the document must be an object with services, routes and nodes",
        ),
    }
}

struct DocumentVisitor<'f> {
    failure: &'f RefCell<Failure>,
    /// The input is JSON text: services take the fast road.
    json_text: bool,
}

impl<'de> Visitor<'de> for DocumentVisitor<'_> {
    type Value = ApplyDocument;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with services, routes and nodes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApplyDocument, A::Error> {
        let mut doc = ApplyDocument::default();
        while let Some(key) = map.next_key::<String>()? {
            self.set(|f| f.key = Some(key.clone()));
            let failure = self.failure;
            match key.as_str() {
                "services" if self.json_text => {
                    let texts = map.next_value_seed(Texts)?;
                    doc.services = services::decode(&texts).map_err(|e| self.fail(e))?;
                }
                "services" => {
                    doc.services = map.next_value_seed(List::new(failure, |v, i| {
                        super::service_from_value(v, &format!("services[{i}]."))
                    }))?;
                }
                "routes" => {
                    doc.routes = map.next_value_seed(List::new(failure, |v, i| {
                        super::from_value(v, &format!("routes[{i}]"))
                    }))?;
                }
                "nodes" => {
                    doc.nodes = map.next_value_seed(List::new(failure, |v, i| {
                        super::from_value(v, &format!("nodes[{i}]"))
                    }))?;
                }
                other => {
                    let message = format!(
                        "invalid body: unknown field `{other}`, expected services, routes or nodes"
                    );
                    return Err(self.fail(ApiError::bad_request(message)));
                }
            }
            self.set(|f| f.key = None);
        }
        Ok(doc)
    }
}

impl DocumentVisitor<'_> {
    fn set(&self, change: impl FnOnce(&mut Failure)) {
        change(&mut self.failure.borrow_mut());
    }

    fn fail<E: de::Error>(&self, error: ApiError) -> E {
        fail(self.failure, error)
    }
}

/// Records `error` as the reason and returns a decoding error to stop with.
fn fail<E: de::Error>(failure: &RefCell<Failure>, error: ApiError) -> E {
    failure.borrow_mut().object.get_or_insert(error);
    E::custom("stopped")
}

/// A list whose items are each read as a value tree and typed by `item`
/// (given the item and its index) before the next is read.
struct List<'f, F> {
    failure: &'f RefCell<Failure>,
    item: F,
}

impl<'f, F> List<'f, F> {
    fn new(failure: &'f RefCell<Failure>, item: F) -> List<'f, F> {
        List { failure, item }
    }
}

impl<'de, T, F> DeserializeSeed<'de> for List<'_, F>
where
    F: FnMut(Value, usize) -> Result<T, ApiError>,
{
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, input: D) -> Result<Vec<T>, D::Error> {
        input.deserialize_seq(self)
    }
}

impl<'de, T, F> Visitor<'de> for List<'_, F>
where
    F: FnMut(Value, usize) -> Result<T, ApiError>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(value) = seq.next_element::<Value>()? {
            match (self.item)(value, out.len()) {
                Ok(item) => out.push(item),
                Err(e) => return Err(fail(self.failure, e)),
            }
        }
        Ok(out)
    }
}

/// A list read as the text of each item, checked as JSON but not decoded.
struct Texts;

impl<'de> DeserializeSeed<'de> for Texts {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, input: D) -> Result<Self::Value, D::Error> {
        input.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Texts {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(text) = seq.next_element()? {
            out.push(text);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> String {
        from_json(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn a_document_decodes_item_by_item() {
        let doc = from_json(
            br#"{"services": [{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}],
                              "endpoints": [{"address": "10.244.1.5"}]}],
                 "routes": [{"prefix": "10.244.2.0/24", "via": "192.168.1.2"}], "nodes": []}"#,
        )
        .unwrap();
        assert_eq!(doc.services.len(), 1);
        assert_eq!(doc.services[0].service.name, "a/b");
        assert_eq!(doc.services[0].endpoints.len(), 1);
        assert_eq!(doc.routes.len(), 1);
        let toml: Value = toml::from_str(
            "[[services]]\nname = \"a/b\"\ncluster_ip = \"10.96.0.1\"\nports = [{port = 80}]\n",
        )
        .unwrap();
        assert_eq!(from_value(toml).unwrap().services[0].service.name, "a/b");
    }

    #[test]
    fn errors_name_the_item_and_the_field() {
        let port = error(
            r#"{"services": [{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}]},
                             {"name": "a/c", "cluster_ip": "10.96.0.2", "ports": [{"port": "x"}]}]}"#,
        );
        assert!(
            port.starts_with("invalid body: services[1].ports[0].port: "),
            "{port}"
        );
        let endpoint = error(
            r#"{"services": [{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}],
                              "endpoints": [{"address": "x"}]}]}"#,
        );
        assert!(
            endpoint.contains("services[0].endpoints[0].address"),
            "{endpoint}"
        );
        let route = error(r#"{"routes": [{"prefix": "10.0.0.0/8", "colour": 1}]}"#);
        assert!(
            route.contains("routes[0]") && route.contains("colour"),
            "{route}"
        );
    }

    #[test]
    fn the_shape_of_the_document_is_checked() {
        let not_object =
            "invalid body: the document must be an object with services, routes and nodes";
        assert_eq!(error("[]"), not_object);
        assert_eq!(error("null"), not_object);
        assert_eq!(
            from_value(Value::Bool(true)).unwrap_err().message,
            not_object
        );
        assert_eq!(
            error(r#"{"services": {}}"#),
            "invalid body: services: must be a list"
        );
        assert_eq!(
            error(r#"{"nodes": null}"#),
            "invalid body: nodes: must be a list"
        );
        assert_eq!(
            error(r#"{"services": [], "extra": 1}"#),
            "invalid body: unknown field `extra`, expected services, routes or nodes"
        );
        assert!(error(r#"{"services": [}"#).starts_with("invalid JSON body: "));
        assert!(error(r#"{"services": []} x"#).starts_with("invalid JSON body: "));
    }
}
