//! podswitch control plane: the `podswitchd` node service, its control API
//! and the state that API manages.

pub mod api;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod metrics;
pub mod ports;
pub mod state;
pub mod stats;
pub mod store;
