//! The `driftline` binary: the command line lives in `driftline::cli`.

/// mimalloc rather than glibc's malloc: a server answering thousands of
/// small requests a second on a few threads spent about a fifth of its CPU
/// in glibc's arena locks and consolidation (bench/serving/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    driftline::cli::main()
}
