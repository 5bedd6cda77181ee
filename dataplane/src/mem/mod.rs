//! Memory: where the big tables live and how the heap is given back.
//!
//! [`hugemem`] puts the big random-access tables (connection tracking, the
//! flow cache) in huge pages and gives the prefetch hint the NAT stage uses
//! before it takes a lock; [`heap`] gives the heap's free pages back to the
//! kernel after large control-plane changes; [`statefile`] maps the file
//! the state that outlives the process lives in (conntrack, affinity), and
//! [`kept`] the small tables kept in it beside those (MACs, neighbours,
//! published counters).
//!
//! With [`crate::io`] this is the only place where `unsafe` may appear, each
//! block with a `// SAFETY:` line. It imports nothing from the rest of the
//! crate: the tables above it bring their own entry types.

pub mod heap;
pub mod hugemem;
pub mod kept;
pub mod statefile;
