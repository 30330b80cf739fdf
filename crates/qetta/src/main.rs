fn main() -> std::process::ExitCode {
    qetta::cli::main()
}
