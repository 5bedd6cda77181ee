//! The `podswitch` CNI plugin binary; all logic is in the library.
fn main() -> std::process::ExitCode {
    podswitch_cni::main()
}
