//! The `--port` syntax of `podswitchctl service add`:
//! `[NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]`.
//!
//! One argument per service port keeps a port's parts together (separate
//! `--target-port`/`--node-port` flags would have to be matched to ports by
//! position). The client checks only the shape; ranges (1–65535, node ports
//! 30000–32767) are the server's to check, so its message names the field.

use std::fmt;

/// The syntax, for messages and help.
pub const SYNTAX: &str = "[NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]";

/// One service port as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePortArg {
    /// The port's name (never all digits, so `80:8080` has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The service port.
    pub port: u32,
    /// The endpoints' port (default: `port`, as in Kubernetes).
    pub target_port: u32,
    /// The node port, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u32>,
}

/// Why a `--port` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; expected {SYNTAX}, e.g. http:80:8080/TCP,nodeport=30080")]
pub struct ServicePortError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ServicePortArg {
    /// Parses one `--port` value.
    pub fn parse(value: &str) -> Result<ServicePortArg, ServicePortError> {
        let fail = |reason: String| ServicePortError {
            value: value.to_string(),
            reason,
        };
        let mut options = value.split(',');
        let main = options.next().unwrap_or_default();
        let (ports, protocol) = match main.split_once('/') {
            Some((ports, protocol)) => (ports, protocol.to_ascii_uppercase()),
            None => (main, "TCP".to_string()),
        };
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(fail(format!(
                "protocol {protocol:?} is not TCP, UDP or SCTP"
            )));
        }
        let mut parts: Vec<&str> = ports.split(':').collect();
        let name = match parts.first() {
            Some(first) if !first.is_empty() && !first.bytes().all(|b| b.is_ascii_digit()) => {
                Some(parts.remove(0).to_string())
            }
            _ => None,
        };
        let number = |what: &str, text: &str| -> Result<u32, ServicePortError> {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(format!("{what} {text:?} is not a number")));
            }
            text.parse()
                .map_err(|_| fail(format!("{what} {text} is too large")))
        };
        let (port, target_port) = match parts.as_slice() {
            [port] => {
                let port = number("port", port)?;
                (port, port)
            }
            [port, target] => (number("port", port)?, number("target port", target)?),
            [] => return Err(fail("no port number".to_string())),
            _ => return Err(fail("too many ':'-separated parts".to_string())),
        };
        let mut node_port = None;
        for option in options {
            match option.split_once('=') {
                Some(("nodeport", n)) if node_port.is_none() => {
                    node_port = Some(number("node port", n)?);
                }
                Some(("nodeport", _)) => return Err(fail("nodeport given twice".to_string())),
                _ => {
                    return Err(fail(format!(
                        "unknown option {option:?} (the only option is nodeport=N)"
                    )));
                }
            }
        }
        Ok(ServicePortArg {
            name,
            protocol,
            port,
            target_port,
            node_port,
        })
    }
}

impl fmt::Display for ServicePortArg {
    /// The same syntax back (target and protocol always spelled out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}:")?;
        }
        write!(f, "{}:{}/{}", self.port, self.target_port, self.protocol)?;
        if let Some(node_port) = self.node_port {
            write!(f, ",nodeport={node_port}")?;
        }
        Ok(())
    }
}

/// A service's `ports` as kubectl's `PORT(S)` column: `80/TCP`, or
/// `80:30080/TCP` with a node port, joined by commas.
pub fn ports_column(ports: Option<&serde_json::Value>) -> String {
    let Some(ports) = ports.and_then(serde_json::Value::as_array) else {
        return super::render::NONE.to_string();
    };
    if ports.is_empty() {
        return super::render::NONE.to_string();
    }
    ports
        .iter()
        .map(|p| {
            let port = super::render::field(p, "port");
            let protocol = p.get("protocol").and_then(|v| v.as_str()).unwrap_or("TCP");
            match p.get("node_port").filter(|n| !n.is_null()) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> ServicePortArg {
        ServicePortArg::parse(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn forms() {
        let full = parse("http:80:8080/tcp,nodeport=30080");
        assert_eq!(
            full,
            ServicePortArg {
                name: Some("http".into()),
                protocol: "TCP".into(),
                port: 80,
                target_port: 8080,
                node_port: Some(30080),
            }
        );
        assert_eq!(full.to_string(), "http:80:8080/TCP,nodeport=30080");
        assert_eq!(parse("80").to_string(), "80:80/TCP");
        assert_eq!(parse("80:8080").to_string(), "80:8080/TCP");
        assert_eq!(parse("dns:53/UDP").to_string(), "dns:53:53/UDP");
        assert_eq!(parse("h2c:443:8443/SCTP").to_string(), "h2c:443:8443/SCTP");
        assert_eq!(
            parse("80,nodeport=30080").to_string(),
            "80:80/TCP,nodeport=30080"
        );
    }

    #[test]
    fn json_omits_what_was_not_given() {
        assert_eq!(
            serde_json::to_value(parse("53/UDP")).unwrap(),
            serde_json::json!({"protocol": "UDP", "port": 53, "target_port": 53})
        );
        assert_eq!(
            serde_json::to_value(parse("http:80:8080,nodeport=30080")).unwrap(),
            serde_json::json!({"name": "http", "protocol": "TCP", "port": 80,
                "target_port": 8080, "node_port": 30080})
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let reason = |v: &str| ServicePortArg::parse(v).unwrap_err().reason;
        assert_eq!(reason(""), "port \"\" is not a number");
        assert_eq!(reason("http"), "no port number");
        assert_eq!(reason("http:x"), "port \"x\" is not a number");
        assert_eq!(reason("80:web"), "target port \"web\" is not a number");
        assert_eq!(reason("a:1:2:3"), "too many ':'-separated parts");
        assert_eq!(
            reason("80/ICMP"),
            "protocol \"ICMP\" is not TCP, UDP or SCTP"
        );
        assert_eq!(
            reason("80,np=1"),
            "unknown option \"np=1\" (the only option is nodeport=N)"
        );
        assert_eq!(reason("80,nodeport=1,nodeport=2"), "nodeport given twice");
        assert_eq!(reason("99999999999"), "port 99999999999 is too large");
        let message = ServicePortArg::parse("80/ICMP").unwrap_err().to_string();
        assert_eq!(
            message,
            "protocol \"ICMP\" is not TCP, UDP or SCTP; expected \
             [NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N], e.g. http:80:8080/TCP,nodeport=30080"
        );
    }

    #[test]
    fn ports_column_is_kubectl_style() {
        let ports = serde_json::json!([
            {"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30080},
            {"protocol": "UDP", "port": 53, "target_port": 53, "node_port": null},
        ]);
        assert_eq!(ports_column(Some(&ports)), "80:30080/TCP,53/UDP");
        assert_eq!(ports_column(None), "<none>");
    }
}
