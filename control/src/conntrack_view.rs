//! The connection table as the API shows it: query-string filters in,
//! JSON entries out (`GET`/`DELETE /v1/conntrack`).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use podswitch_dataplane::conntrack::{ConnKey, TcpState};
use podswitch_dataplane::nat::{ConntrackFilter, ConntrackRecord};
use podswitch_dataplane::wire::IpProtocol;
use serde_json::{Value, json};

use crate::error::ControlError;

/// Entries a listing returns unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100_000;

/// The protocol's name as `conntrack -L` prints it.
pub fn protocol_name(protocol: IpProtocol) -> &'static str {
    match protocol.0 {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "unknown",
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str, expect: &str) -> Result<T, ControlError> {
    value
        .parse()
        .map_err(|_| ControlError::invalid(key, value, expect))
}

/// Parses `proto`, `src`, `dst`, `sport`, `dport`, `reply_src`,
/// `reply_dst`, `state` and `limit`; any other key is an error.
pub fn parse_filter(
    query: &HashMap<String, String>,
) -> Result<(ConntrackFilter, usize), ControlError> {
    let mut filter = ConntrackFilter::default();
    let mut limit = DEFAULT_LIMIT;
    let addr = |key: &str, value: &str| -> Result<Option<Ipv4Addr>, ControlError> {
        parse(key, value, "must be an IPv4 address").map(Some)
    };
    let port = |key: &str, value: &str| -> Result<Option<u16>, ControlError> {
        parse(key, value, "must be a port, 0 to 65535").map(Some)
    };
    let mut keys: Vec<&String> = query.keys().collect();
    keys.sort();
    for key in keys {
        let value = query[key].as_str();
        match key.as_str() {
            "proto" | "protocol" => {
                filter.protocol = Some(match value.to_ascii_lowercase().as_str() {
                    "tcp" => IpProtocol::TCP,
                    "udp" => IpProtocol::UDP,
                    "icmp" => IpProtocol::ICMP,
                    "sctp" => IpProtocol(132),
                    _ => {
                        return Err(ControlError::invalid(
                            key.clone(),
                            value,
                            "must be tcp, udp, icmp or sctp",
                        ));
                    }
                })
            }
            "src" => filter.src = addr(key, value)?,
            "dst" => filter.dst = addr(key, value)?,
            "reply_src" => filter.reply_src = addr(key, value)?,
            "reply_dst" => filter.reply_dst = addr(key, value)?,
            "sport" => filter.sport = port(key, value)?,
            "dport" => filter.dport = port(key, value)?,
            "state" => {
                let upper = value.to_ascii_uppercase();
                filter.state = Some(
                    TcpState::ALL
                        .into_iter()
                        .find(|s| s.name() == upper)
                        .ok_or_else(|| {
                            ControlError::invalid(
                                key.clone(),
                                value,
                                "must be a TCP state such as ESTABLISHED or TIME_WAIT",
                            )
                        })?,
                );
            }
            "limit" => limit = parse(key, value, "must be a number")?,
            _ => {
                return Err(ControlError::Unknown {
                    what: "filter",
                    name: key.clone(),
                    expected: "proto, src, dst, sport, dport, reply_src, reply_dst, state or limit",
                });
            }
        }
    }
    Ok((filter, limit))
}

fn tuple(key: &ConnKey) -> Value {
    json!({
        "src": key.src_addr.to_string(),
        "dst": key.dst_addr.to_string(),
        "sport": key.src_port,
        "dport": key.dst_port,
    })
}

fn endpoint(addr: Option<(Ipv4Addr, u16)>) -> Value {
    addr.map_or(Value::Null, |(a, p)| Value::String(format!("{a}:{p}")))
}

/// One entry as JSON (see `docs/api.md`).
pub fn record_json(r: &ConntrackRecord) -> Value {
    let mut flags = Vec::new();
    if !r.seen_reply {
        flags.push("UNREPLIED");
    }
    if r.assured {
        flags.push("ASSURED");
    }
    json!({
        "protocol": protocol_name(r.protocol),
        "protocol_number": r.protocol.0,
        "state": r.tcp_state.map(TcpState::name),
        "timeout": r.timeout_secs,
        "original": tuple(&r.original),
        "reply": tuple(&r.reply),
        "flags": flags,
        "nat": {"snat": endpoint(r.nat.src), "dnat": endpoint(r.nat.dst)},
    })
}

#[cfg(test)]
mod tests {
    use podswitch_dataplane::conntrack::Nat;

    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_and_bad_values_name_the_field() {
        let (f, limit) = parse_filter(&query(&[
            ("proto", "udp"),
            ("dst", "10.96.0.10"),
            ("dport", "53"),
            ("state", "established"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(f.protocol, Some(IpProtocol::UDP));
        assert_eq!(f.dst, Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(
            (f.dport, f.state, limit),
            (Some(53), Some(TcpState::Established), 10)
        );
        for (pairs, needle) in [
            (vec![("proto", "gre")], "proto = gre"),
            (vec![("src", "10.0.0")], "src = 10.0.0"),
            (vec![("sport", "70000")], "sport = 70000"),
            (vec![("state", "OPEN")], "state = OPEN"),
            (vec![("colour", "red")], "unknown filter `colour`"),
        ] {
            let e = parse_filter(&query(&pairs)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ControlError::Invalid { .. } | ControlError::Unknown { .. }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn records_carry_tuples_flags_and_nat() {
        let client = (Ipv4Addr::new(10, 244, 1, 2), 40000);
        let vip = (Ipv4Addr::new(10, 96, 0, 10), 80);
        let pod = (Ipv4Addr::new(10, 244, 1, 5), 8080);
        let original = ConnKey::tcp(client, vip);
        let nat = Nat::dnat(pod);
        let v = record_json(&ConntrackRecord {
            protocol: IpProtocol::TCP,
            tcp_state: Some(TcpState::Established),
            timeout_secs: 431_999,
            original,
            reply: nat.reply_key(&original),
            assured: true,
            seen_reply: true,
            nat,
        });
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["state"], "ESTABLISHED");
        assert_eq!(v["reply"]["src"], "10.244.1.5");
        assert_eq!(v["reply"]["dport"], 40000);
        assert_eq!(v["flags"], json!(["ASSURED"]));
        assert_eq!(v["nat"]["dnat"], "10.244.1.5:8080");
        assert_eq!(v["nat"]["snat"], Value::Null);
        // The CLI renders exactly this JSON.
        let line = crate::ctl::render_conntrack_entry(&v);
        assert!(
            line.starts_with("tcp      6 431999 ESTABLISHED src=10.244.1.2"),
            "{line}"
        );
    }
}
