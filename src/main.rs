fn main() {
    std::process::exit(sealedfs::cli::main());
}
