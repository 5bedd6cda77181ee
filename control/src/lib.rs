//! podswitch control plane: the `podswitchd` node service (and, later, its
//! control API) and `podswitchctl`, the API's command line client.

pub mod cli;
pub mod client;
pub mod ctl;
pub mod daemon;
pub mod fake_api;
pub mod ports;
pub mod stats;
