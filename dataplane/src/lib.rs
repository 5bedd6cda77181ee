//! podswitch dataplane: packet formats, pipeline stages and I/O.
//!
//! The modules are layers, bottom first, and each imports only the layers
//! below it (`tests/layers.rs` checks it): [`wire`] (formats), [`mem`]
//! (huge pages, the heap) and [`packet`] (frames, batches, verdicts,
//! counters); [`io`] (TAP, AF_PACKET, pcap); the tables and codecs the
//! stages read ([`conntrack`], [`services`], [`routes`], [`mirror`],
//! [`overlay`]); [`config`] (the immutable snapshot the pipeline runs
//! against); the NAT stage ([`nat`]); [`pipeline`] (the L2/L3 stages and
//! the order of all of them); and what runs pipelines ([`worker`],
//! [`replay`]). This crate knows nothing about HTTP or CNI.
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
