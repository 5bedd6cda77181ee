//! What can go wrong with a change to the control plane, said in the
//! domain's terms: which object was not found, which one a value clashes
//! with, which field is invalid (its path and value), who manages an
//! object, which step failed. No HTTP here: the API maps each kind to a
//! status and the documented JSON body at the edge (`api::errors`), and
//! the Kubernetes source turns them into skip reasons and log lines.
//!
//! Each message names the field and the value (`ips = 10.244.1.2: already
//! the address of port pod-a`), as docs/api.md shows them.

use std::fmt;

use crate::store::StoreError;

/// Why a change or a request was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A field's value is not accepted on its own or against the node's
    /// configuration (e.g. a pod IP outside the pod subnet).
    #[error("{field} = {value}: {reason}")]
    Invalid {
        /// The field's path, e.g. `services[3].ports[0].port`.
        field: String,
        /// The value refused.
        value: String,
        /// Why.
        reason: String,
    },
    /// A query or document names something the API does not know.
    #[error("unknown {what} `{name}`, expected {expected}")]
    Unknown {
        /// What kind of name, e.g. `filter`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The names known.
        expected: &'static str,
    },
    /// The configuration the change leads to cannot be built (a message of
    /// the dataplane's own that names no single field).
    #[error("{0}")]
    Config(String),
    /// The object named does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// `port`, `route`, `service`, `endpoint`, `node`, `mirror`.
        kind: &'static str,
        /// Its name (or key).
        name: String,
    },
    /// An object of this kind and name exists already.
    #[error("{field} = {value}: a {kind} {key} exists")]
    Exists {
        /// The field naming it (`name`, `prefix`, `iface`).
        field: &'static str,
        /// Its value.
        value: String,
        /// What exists, e.g. `service`, `network device`.
        kind: &'static str,
        /// What makes it the same: `with this name`, `for this prefix`.
        key: &'static str,
    },
    /// A value is another object's already (an address, a MAC, a port).
    #[error("{field} = {value}: already {holder}")]
    Taken {
        /// The field's path.
        field: String,
        /// The value.
        value: String,
        /// Whose it is, e.g. `the address of port pod-a`, `node node-b`.
        holder: String,
    },
    /// A service frontend (address, port, protocol) is another service's.
    #[error("{frontend}: already a frontend of service {service}")]
    FrontendTaken {
        /// `address:port/protocol`.
        frontend: String,
        /// The service that has it.
        service: String,
    },
    /// A value appears twice in one request.
    #[error("{field} = {value}: listed twice")]
    ListedTwice {
        /// The field's path of the second one.
        field: String,
        /// The value.
        value: String,
    },
    /// A service's cluster IP or node port is one of the config file's services'.
    #[error(
        "name = {name}: cluster IP {cluster_ip} or a node port is used by a service of the node's config file"
    )]
    FileServiceClash {
        /// The refused service.
        name: String,
        /// Its cluster IP.
        cluster_ip: std::net::Ipv4Addr,
    },
    /// The object belongs to another source and is read-only through the API.
    #[error("{kind} {name} is managed by {manager}")]
    Managed {
        /// `service` or `node`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Who manages it.
        manager: Manager,
    },
    /// The object comes from the config file and cannot be changed through the API.
    #[error("{kind} {name} comes from the config file; remove it there")]
    FromConfigFile {
        /// `port` or `route`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The object is still used by another.
    #[error("{kind} {name} is used by {user}")]
    InUse {
        /// What cannot go, e.g. `port`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What uses it, e.g. `a mirror session`.
        user: &'static str,
    },
    /// The new service table cannot be built (a clash the checks before it missed).
    #[error("{0}")]
    ServiceTable(#[from] podswitch_dataplane::services::ServiceTableError),
    /// A device the change needs could not be made (a port's TAP, a mirror interface).
    #[error("{0}")]
    Device(String),
    /// The change was valid but could not be stored: nothing changed.
    #[error("the change was not stored: {0}")]
    Store(#[from] StoreError),
    /// The request needs the running dataplane, and none runs.
    #[error("{0}")]
    NotRunning(&'static str),
    /// Something that should not happen (a thread that did not start, …).
    #[error("{0}")]
    Internal(String),
}

/// A source other than the API that manages objects (read-only through
/// the API), for [`ControlError::Managed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The Kubernetes source (`podswitchd --kubernetes`).
    Kubernetes,
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Manager::Kubernetes => write!(
                f,
                "the Kubernetes source (podswitchd --kubernetes); change it through the Kubernetes API"
            ),
        }
    }
}

impl ControlError {
    /// [`ControlError::Invalid`] with `field = value: reason`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> ControlError {
        ControlError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// [`ControlError::Taken`]: `field = value: already <holder>`.
    pub fn taken(
        field: impl Into<String>,
        value: impl fmt::Display,
        holder: impl Into<String>,
    ) -> ControlError {
        ControlError::Taken {
            field: field.into(),
            value: value.to_string(),
            holder: holder.into(),
        }
    }

    /// [`ControlError::NotFound`].
    pub fn not_found(kind: &'static str, name: impl fmt::Display) -> ControlError {
        ControlError::NotFound {
            kind,
            name: name.to_string(),
        }
    }

    /// [`ControlError::Exists`] for an object named by `name`.
    pub fn exists(kind: &'static str, name: impl fmt::Display) -> ControlError {
        ControlError::Exists {
            field: "name",
            value: name.to_string(),
            kind,
            key: "with this name",
        }
    }

    /// For a request that names one item of a list (a port, a route, a
    /// node): an invalid field of that item, `ports[7].mac`, is named as
    /// the request named it, `mac`. Other errors are returned as they are.
    pub fn within_item(self, list: &str) -> ControlError {
        match self {
            ControlError::Invalid {
                field,
                value,
                reason,
            } => {
                let field = match item_field(&field, list) {
                    Some((_, rest)) => rest.to_string(),
                    None => field,
                };
                ControlError::Invalid {
                    field,
                    value,
                    reason,
                }
            }
            other => other,
        }
    }

    /// The index in `list` of the item an invalid field belongs to
    /// (`nodes[3].node_ip` → 3 for `nodes`).
    pub fn item_index(&self, list: &str) -> Option<usize> {
        match self {
            ControlError::Invalid { field, .. } => item_field(field, list).map(|(i, _)| i),
            _ => None,
        }
    }
}

/// `ports[7].mac` → `(7, "mac")` for `ports`.
fn item_field<'a>(field: &'a str, list: &str) -> Option<(usize, &'a str)> {
    let rest = field.strip_prefix(list)?.strip_prefix('[')?;
    let (index, rest) = rest.split_once("].")?;
    Some((index.parse().ok()?, rest))
}

impl From<podswitch_dataplane::config::ConfigError> for ControlError {
    fn from(e: podswitch_dataplane::config::ConfigError) -> ControlError {
        use podswitch_dataplane::config::ConfigError;
        match e {
            ConfigError::Invalid {
                field,
                value,
                reason,
            } => ControlError::Invalid {
                field,
                value,
                reason,
            },
            ConfigError::Parse(message) => ControlError::Config(message),
            e @ ConfigError::Read { .. } => ControlError::Config(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_field_is_named_as_the_request_named_it() {
        let e = ControlError::invalid("ports[7].mac", "00:00:00:00:00:00", "must be unicast");
        assert_eq!(e.item_index("ports"), Some(7));
        assert_eq!(e.item_index("nodes"), None);
        let e = e.within_item("ports");
        assert_eq!(e.to_string(), "mac = 00:00:00:00:00:00: must be unicast");
        let other = ControlError::invalid("gateway", "10.0.0.0/8", "x").within_item("ports");
        assert_eq!(other.to_string(), "gateway = 10.0.0.0/8: x");
    }

    #[test]
    fn managed_objects_say_who_manages_them() {
        let e = ControlError::Managed {
            kind: "service",
            name: "shop/web".into(),
            manager: Manager::Kubernetes,
        };
        assert_eq!(
            e.to_string(),
            "service shop/web is managed by the Kubernetes source (podswitchd --kubernetes); change it through the Kubernetes API"
        );
    }
}
