//! podswitchctl: inspect and change a running podswitchd. See `podswitchctl --help`.

fn main() -> std::process::ExitCode {
    podswitch_control::ctl::main()
}
