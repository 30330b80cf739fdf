/// mimalloc: the service allocates small, short-lived buffers on every request (headers, JSON,
/// rows) from two or more threads; glibc's allocator spent about a fifth of a request's CPU
/// time on them (profile in docs/BENCHMARKS.md), mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    qetta::cli::main()
}
