//! The services of a JSON document, decoded straight into their types.
//!
//! Through a `serde_json::Value` each service cost about as much as all the
//! rest of an apply; decoded from its text it costs a fraction of that, and
//! the services are split among the cores. The value-tree road
//! ([`service_from_value`](super::super::service_from_value)) stays the
//! reference: a service whose text does not decode here (a wrong type, an
//! unknown or repeated field) is decoded that way, which gives the same
//! service or the error with its field path, exactly as before.

use std::fmt;

use compact_str::CompactString;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::api::ApiError;
use crate::state::{Endpoint, Service, ServiceWithEndpoints};

/// Fewest services worth decoding on more than one thread.
const PARALLEL_DECODE: usize = 1024;

/// The services whose texts are `texts`, in order; the error is the first
/// failing service's.
pub(super) fn decode(texts: &[&RawValue]) -> Result<Vec<ServiceWithEndpoints>, ApiError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || texts.len() < PARALLEL_DECODE {
        return decode_part(texts, 0);
    }
    let chunk = texts.len().div_ceil(threads);
    let parts = std::thread::scope(|scope| {
        let parts: Vec<_> = texts
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| scope.spawn(move || decode_part(part, k * chunk)))
            .collect();
        parts
            .into_iter()
            .map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Vec<_>>()
    });
    let mut services = Vec::with_capacity(texts.len());
    for part in parts {
        services.extend(part?);
    }
    Ok(services)
}

/// The services of `texts`, the first of which is `services[first]`.
fn decode_part(texts: &[&RawValue], first: usize) -> Result<Vec<ServiceWithEndpoints>, ApiError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| service(text.get(), first + i))
        .collect()
}

/// Service `services[index]` from its text.
fn service(text: &str, index: usize) -> Result<ServiceWithEndpoints, ApiError> {
    let mut endpoints = None;
    let mut input = serde_json::Deserializer::from_str(text);
    let typed = Service::deserialize(WithoutEndpoints {
        input: &mut input,
        endpoints: &mut endpoints,
    });
    match typed {
        Ok(mut service) => {
            // Lists read from text grow by doubling (a value tree knows
            // their length): 10 endpoints would keep room for 16, which at
            // 100,000 services is a fifth of what a service keeps.
            let mut endpoints = endpoints.unwrap_or_default();
            endpoints.shrink_to_fit();
            service.ports.shrink_to_fit();
            service.external_ips.shrink_to_fit();
            Ok(ServiceWithEndpoints { service, endpoints })
        }
        Err(_) => {
            // The text was read as JSON already, so it parses.
            let value: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            super::super::service_from_value(value, &format!("services[{index}]."))
        }
    }
}

/// A service object read as a [`Service`], its `endpoints` field taken
/// aside into `endpoints` (the last one, when repeated, as in a value tree).
struct WithoutEndpoints<'a, D> {
    input: D,
    endpoints: &'a mut Option<Vec<Endpoint>>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithoutEndpoints<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.input.deserialize_map(Filtered {
            visitor,
            endpoints: self.endpoints,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The visitor of a [`Service`], shown the object without `endpoints`.
struct Filtered<'a, V> {
    visitor: V,
    endpoints: &'a mut Option<Vec<Endpoint>>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Filtered<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(FilteredMap {
            map,
            endpoints: self.endpoints,
        })
    }
}

/// An object's fields less `endpoints`, whose value is decoded aside.
struct FilteredMap<'a, A> {
    map: A,
    endpoints: &'a mut Option<Vec<Endpoint>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilteredMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<CompactString>()? {
            if key == "endpoints" {
                *self.endpoints = Some(self.map.next_value()?);
                continue;
            }
            let key: de::value::StrDeserializer<'_, A::Error> = key.as_str().into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service from its text, and from its value tree.
    fn both_ways(
        text: &str,
    ) -> (
        Result<ServiceWithEndpoints, ApiError>,
        Result<ServiceWithEndpoints, ApiError>,
    ) {
        let value: Value = serde_json::from_str(text).unwrap();
        (
            service(text, 7),
            super::super::super::service_from_value(value, "services[7]."),
        )
    }

    #[test]
    fn a_service_decodes_as_through_its_value_tree() {
        for text in [
            r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}]}"#,
            r#"{"endpoints": [{"address": "10.244.1.5", "node": "n1", "ports": {"http": 8080}}],
                "name": "a/b", "cluster_ip": "10.96.0.1", "session_affinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "target_port": 8080, "protocol": "UDP"}],
                "external_ips": ["192.0.2.1"], "internal_traffic_policy": "Local"}"#,
            // Repeated fields: a value tree keeps the last.
            r#"{"name": "a/b", "name": "a/c", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}],
                "endpoints": [{"address": "x"}], "endpoints": [{"address": "10.244.1.6"}]}"#,
            r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [], "endp\u006fints": []}"#,
        ] {
            let (fast, reference) = both_ways(text);
            assert_eq!(fast.unwrap(), reference.unwrap(), "{text}");
        }
    }

    #[test]
    fn errors_are_the_value_trees() {
        for (text, field) in [
            (
                r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": "x"}]}"#,
                "services[7].ports[0].port: ",
            ),
            (
                r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [], "endpoints": [{"address": "x"}]}"#,
                "services[7].endpoints[0].address: ",
            ),
            (
                r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [], "endpoints": null}"#,
                "services[7].endpoints: ",
            ),
            (
                r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [], "colour": 1}"#,
                "services[7].colour: ",
            ),
            (
                r#"{"cluster_ip": "10.96.0.1", "ports": []}"#,
                "services[7]: ",
            ),
            (r#"[1, 2]"#, "services[7][0]: "),
        ] {
            let (fast, reference) = both_ways(text);
            let (fast, reference) = (fast.unwrap_err(), reference.unwrap_err());
            assert_eq!(fast.message, reference.message);
            assert!(
                fast.message.starts_with(&format!("invalid body: {field}")),
                "{}",
                fast.message
            );
        }
    }

    #[test]
    fn the_first_failing_service_is_reported() {
        let good = r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": 80}]}"#;
        let bad = r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"port": -1}]}"#;
        let mut list: Vec<&str> = vec![good; 3000];
        list[2500] = bad;
        list[1700] = bad;
        let text = format!("[{}]", list.join(","));
        let texts: Vec<&RawValue> = serde_json::from_str(&text).unwrap();
        let error = decode(&texts).unwrap_err();
        assert!(
            error
                .message
                .starts_with("invalid body: services[1700].ports[0].port: "),
            "{}",
            error.message
        );
        list[1700] = good;
        list[2500] = good;
        let text = format!("[{}]", list.join(","));
        let texts: Vec<&RawValue> = serde_json::from_str(&text).unwrap();
        assert_eq!(decode(&texts).unwrap().len(), 3000);
    }
}
