//! podswitchd: the podswitch node service. See `podswitchd --help`.

fn main() -> std::process::ExitCode {
    podswitch_control::cli::main()
}
