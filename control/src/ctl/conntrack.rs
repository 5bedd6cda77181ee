//! `podswitchctl conntrack`: the connection table in the shape of
//! conntrack-tools' `conntrack -L`, with its filter flags.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use clap::{Args, ValueEnum};
use podswitch_dataplane::conntrack::TcpState;
use serde_json::Value;

/// `conntrack list/flush` filters (the original tuple unless named `reply`).
#[derive(Debug, Clone, Default, Args)]
pub struct ConntrackFilterArgs {
    /// Layer 4 protocol.
    #[arg(short = 'p', long = "proto", value_enum)]
    pub protocol: Option<ConntrackProtocol>,
    /// Source address of the original direction.
    #[arg(short = 's', long = "src", visible_alias = "orig-src")]
    pub src: Option<Ipv4Addr>,
    /// Destination address of the original direction (e.g. the ClusterIP).
    #[arg(short = 'd', long = "dst", visible_alias = "orig-dst")]
    pub dst: Option<Ipv4Addr>,
    /// Source port of the original direction.
    #[arg(long = "sport", visible_alias = "orig-port-src")]
    pub sport: Option<u16>,
    /// Destination port of the original direction.
    #[arg(long = "dport", visible_alias = "orig-port-dst")]
    pub dport: Option<u16>,
    /// Source address of the reply direction (e.g. the endpoint).
    #[arg(short = 'r', long = "reply-src")]
    pub reply_src: Option<Ipv4Addr>,
    /// Destination address of the reply direction (e.g. the masquerade address).
    #[arg(short = 'q', long = "reply-dst")]
    pub reply_dst: Option<Ipv4Addr>,
    /// TCP state, e.g. ESTABLISHED or TIME_WAIT.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<String>,
}

/// `-p/--proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConntrackProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (echo).
    Icmp,
    /// SCTP.
    Sctp,
}

impl ConntrackProtocol {
    fn name(self) -> &'static str {
        match self {
            ConntrackProtocol::Tcp => "tcp",
            ConntrackProtocol::Udp => "udp",
            ConntrackProtocol::Icmp => "icmp",
            ConntrackProtocol::Sctp => "sctp",
        }
    }
}

fn parse_state(value: &str) -> Result<String, String> {
    let upper = value.to_ascii_uppercase();
    // The states as `conntrack -L` prints them (the tracker's own names).
    let names = TcpState::ALL.map(TcpState::name);
    if names.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("must be one of {}", names.join(", ")))
    }
}

impl ConntrackFilterArgs {
    /// The filters as the API's query string (`?proto=tcp&src=…`), empty without any.
    pub fn query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(p) = self.protocol {
            pairs.push(("proto", p.name().to_string()));
        }
        let addrs = [
            ("src", self.src),
            ("dst", self.dst),
            ("reply_src", self.reply_src),
            ("reply_dst", self.reply_dst),
        ];
        for (key, addr) in addrs {
            if let Some(a) = addr {
                pairs.push((key, a.to_string()));
            }
        }
        for (key, port) in [("sport", self.sport), ("dport", self.dport)] {
            if let Some(p) = port {
                pairs.push((key, p.to_string()));
            }
        }
        if let Some(s) = &self.state {
            pairs.push(("state", s.clone()));
        }
        if pairs.is_empty() {
            return String::new();
        }
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("?{}", joined.join("&"))
    }
}

fn tuple(out: &mut String, t: &Value, protocol: &str, reply: bool) {
    let text = |k: &str| t[k].as_str().unwrap_or("?").to_string();
    let port = |k: &str| t[k].as_u64().unwrap_or(0);
    let _ = write!(out, "src={} dst={} ", text("src"), text("dst"));
    if protocol == "icmp" {
        // Echo request one way, echo reply the other; the id is both "ports".
        let kind = if reply { 0 } else { 8 };
        let _ = write!(out, "type={kind} code=0 id={} ", port("sport"));
    } else {
        let _ = write!(out, "sport={} dport={} ", port("sport"), port("dport"));
    }
}

/// One entry as `conntrack -L` prints it, e.g.
/// `tcp      6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED]`.
pub fn render_entry(entry: &Value) -> String {
    let protocol = entry["protocol"].as_str().unwrap_or("unknown");
    let flags: Vec<&str> = entry["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = format!(
        "{protocol:<8} {} {} ",
        entry["protocol_number"].as_u64().unwrap_or(0),
        entry["timeout"].as_u64().unwrap_or(0)
    );
    if let Some(state) = entry["state"].as_str() {
        out.push_str(state);
        out.push(' ');
    }
    tuple(&mut out, &entry["original"], protocol, false);
    if flags.contains(&"UNREPLIED") {
        out.push_str("[UNREPLIED] ");
    }
    tuple(&mut out, &entry["reply"], protocol, true);
    if flags.contains(&"ASSURED") {
        out.push_str("[ASSURED] ");
    }
    out.truncate(out.trim_end().len());
    out
}

/// The listing: one line per entry, in the server's order.
pub fn render_listing(body: &Value) -> String {
    let mut out = String::new();
    for entry in body["entries"].as_array().into_iter().flatten() {
        out.push_str(&render_entry(entry));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_render_like_conntrack_l() {
        let tcp = json!({
            "protocol": "tcp", "protocol_number": 6, "state": "ESTABLISHED", "timeout": 431999,
            "original": {"src": "10.244.1.2", "dst": "10.96.0.10", "sport": 40000, "dport": 80},
            "reply": {"src": "10.244.1.5", "dst": "10.244.1.2", "sport": 8080, "dport": 40000},
            "flags": ["ASSURED"]
        });
        assert_eq!(
            render_entry(&tcp),
            "tcp      6 431999 ESTABLISHED src=10.244.1.2 dst=10.96.0.10 sport=40000 dport=80 \
             src=10.244.1.5 dst=10.244.1.2 sport=8080 dport=40000 [ASSURED]"
        );
        let udp = json!({
            "protocol": "udp", "protocol_number": 17, "state": null, "timeout": 29,
            "original": {"src": "10.244.1.2", "dst": "10.96.0.10", "sport": 5000, "dport": 53},
            "reply": {"src": "10.244.1.6", "dst": "10.244.1.2", "sport": 53, "dport": 5000},
            "flags": ["UNREPLIED"]
        });
        assert_eq!(
            render_entry(&udp),
            "udp      17 29 src=10.244.1.2 dst=10.96.0.10 sport=5000 dport=53 [UNREPLIED] \
             src=10.244.1.6 dst=10.244.1.2 sport=53 dport=5000"
        );
        let icmp = json!({
            "protocol": "icmp", "protocol_number": 1, "timeout": 30,
            "original": {"src": "10.244.1.2", "dst": "198.51.100.7", "sport": 77, "dport": 77},
            "reply": {"src": "198.51.100.7", "dst": "192.168.50.2", "sport": 77, "dport": 77},
            "flags": []
        });
        assert_eq!(
            render_entry(&icmp),
            "icmp     1 30 src=10.244.1.2 dst=198.51.100.7 type=8 code=0 id=77 \
             src=198.51.100.7 dst=192.168.50.2 type=0 code=0 id=77"
        );
    }

    #[test]
    fn filters_become_a_query_string() {
        assert_eq!(ConntrackFilterArgs::default().query(), "");
        let args = ConntrackFilterArgs {
            protocol: Some(ConntrackProtocol::Udp),
            dst: Some(Ipv4Addr::new(10, 96, 0, 10)),
            dport: Some(53),
            reply_src: Some(Ipv4Addr::new(10, 244, 1, 6)),
            state: Some("ESTABLISHED".into()),
            ..Default::default()
        };
        assert_eq!(
            args.query(),
            "?proto=udp&dst=10.96.0.10&reply_src=10.244.1.6&dport=53&state=ESTABLISHED"
        );
        assert_eq!(parse_state("time_wait").unwrap(), "TIME_WAIT");
        assert!(parse_state("OPEN").unwrap_err().contains("ESTABLISHED"));
    }
}
