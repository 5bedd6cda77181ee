//! podswitchd: the node service.
fn main() {}
