//! The `webex-bulk` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    webex_bulk::app::main()
}
