//! The `driftline` binary: the command line lives in `driftline::cli`.

fn main() -> std::process::ExitCode {
    driftline::cli::main()
}
