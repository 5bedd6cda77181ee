//! The podswitch CNI plugin (placeholder while the modules land).
pub mod cidr;
pub mod env;
pub mod ipam;
pub mod types;

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
