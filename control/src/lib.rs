//! podswitch control plane: the `podswitchd` node service (and, later, its
//! control API and `podswitchctl`).

pub mod cli;
pub mod daemon;
pub mod ports;
pub mod stats;
