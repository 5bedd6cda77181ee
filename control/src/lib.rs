//! podswitch control plane: the `podswitchd` node service, its control API
//! and the state that API manages, and `podswitchctl`, the API's command
//! line client.

pub mod api;
pub mod cli;
pub mod client;
pub mod conntrack_view;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod fake_api;
pub mod host;
pub mod instance_lock;
pub mod kubernetes;
pub mod metrics;
pub mod mirror;
pub mod node_config;
pub mod parallel;
pub mod ports;
pub mod services;
pub mod state;
pub mod stats;
pub mod store;
pub mod takeover;
pub mod tunnel_tx;
pub mod validate;
