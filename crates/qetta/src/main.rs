// The allocator: a request allocates and frees a few hundred small blocks across two worker
// threads; glibc's malloc spent about a fifth of each request's instructions on them
// (docs/BENCHMARKS.md, profile of 2026-12-04).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    qetta::cli::main()
}
