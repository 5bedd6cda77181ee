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
use crate::state::{Endpoint, ExactList, Service, ServiceWithEndpoints};

/// Fewest services worth decoding on more than one thread.
const PARALLEL_DECODE: usize = 1024;

/// The services whose texts are `texts`, in order; the error is the first
/// failing service's.
pub(super) fn decode(texts: &[&RawValue]) -> Result<Vec<ServiceWithEndpoints>, ApiError> {
    let indexed: Vec<(usize, &RawValue)> = texts.iter().copied().enumerate().collect();
    crate::parallel::map(&indexed, PARALLEL_DECODE, |&(index, text)| {
        service(text.get(), index)
    })
    .into_iter()
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
        Ok(service) => Ok(ServiceWithEndpoints {
            service,
            endpoints: endpoints.unwrap_or_default(),
        }),
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
                // Of exactly its length, as the service's own lists.
                let list = ExactList(std::marker::PhantomData);
                *self.endpoints = Some(self.map.next_value_seed(list)?);
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
    fn lists_are_kept_at_their_length() {
        let endpoints: Vec<String> = (1..=10)
            .map(|i| format!(r#"{{"address": "10.244.1.{i}"}}"#))
            .collect();
        let text = format!(
            r#"{{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{{"port": 80}}],
                "external_ips": ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "endpoints": [{}]}}"#,
            endpoints.join(",")
        );
        let s = service(&text, 0).unwrap();
        assert_eq!((s.endpoints.len(), s.endpoints.capacity()), (10, 10));
        assert_eq!((s.service.ports.len(), s.service.ports.capacity()), (1, 1));
        assert_eq!(s.service.external_ips.capacity(), 3);
        // Past what is gathered on the stack too.
        let many: Vec<String> = (1..=40)
            .map(|i| format!(r#"{{"address": "10.244.1.{i}"}}"#))
            .collect();
        let text = format!(
            r#"{{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{{"port": 80}}], "endpoints": [{}]}}"#,
            many.join(",")
        );
        let s = service(&text, 0).unwrap();
        assert_eq!((s.endpoints.len(), s.endpoints.capacity()), (40, 40));
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
            (
                r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": 5}"#,
                "services[7].ports: invalid type: integer `5`, expected a sequence",
            ),
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
