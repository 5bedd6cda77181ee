//! podswitch control plane: the `podswitchd` node service (and, later, its
//! control API and `podswitchctl`).

pub mod cli;
pub mod client;
pub mod daemon;
pub mod fake_api;
pub mod ports;
pub mod stats;
