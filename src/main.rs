//! The `vaultstore` binary: all behaviour lives in the library. It counts
//! its heap so that `vaultstore bench` reports measured memory.

#[global_allocator]
static HEAP: vaultstore::heap::CountingAlloc = vaultstore::heap::CountingAlloc;

fn main() -> std::process::ExitCode {
    vaultstore::cli::main()
}
