//! The `vaultstore` binary: all behaviour lives in the library.
fn main() -> std::process::ExitCode {
    vaultstore::cli::main()
}
