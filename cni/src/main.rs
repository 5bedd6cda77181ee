//! podswitch CNI plugin.
fn main() {}
