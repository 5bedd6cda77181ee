//! The `podswitch` CNI plugin, built inside the tests package so that
//! integration tests find it next to themselves (same code as the real
//! binary: `podswitch_cni::main`).

fn main() -> std::process::ExitCode {
    podswitch_cni::main()
}
