//! The `tailrace` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    tailrace_agent::commands::cli::main()
}
