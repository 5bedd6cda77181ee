//! podswitch dataplane: packet formats, pipeline stages and I/O.
//!
//! The folders follow the packet's path: [`wire`] (formats), [`io`] (pcap
//! files and TAP ports; AF_PACKET next), [`pipeline`] (batches, verdicts and
//! one module per stage) and [`config`] (the immutable snapshot the
//! pipeline runs against). This crate knows nothing about HTTP or CNI.
#![deny(unsafe_code)]

pub mod config;
pub mod conntrack;
pub mod io;
pub mod mem;
pub mod mirror;
pub mod nat;
pub mod overlay;
pub mod packet;
pub mod pipeline;
pub mod replay;
pub mod routes;
pub mod services;
pub mod wire;
pub mod worker;
