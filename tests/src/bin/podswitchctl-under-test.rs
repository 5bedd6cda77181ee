//! The `podswitchctl` command line, built inside the tests package so that
//! integration tests find it next to themselves (same code as the real
//! binary: `podswitch_control::ctl::main`).

fn main() -> std::process::ExitCode {
    podswitch_control::ctl::main()
}
