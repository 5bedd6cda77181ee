//! The `podswitchd` command line, built inside the tests package so that
//! integration tests find it as `CARGO_BIN_EXE_podswitchd-under-test`
//! (same code as the real binary: `podswitch_control::cli::main`).

fn main() -> std::process::ExitCode {
    podswitch_control::cli::main()
}
