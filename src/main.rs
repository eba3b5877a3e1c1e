fn main() -> std::process::ExitCode {
    milepost::cli::main()
}
