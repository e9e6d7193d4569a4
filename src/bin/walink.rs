//! `walink`: the command-line client of walinkd.

fn main() -> std::process::ExitCode {
    walink::cli::main()
}
