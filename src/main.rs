//! The `webex-bulk` binary: everything lives in the library.

fn main() {
    std::process::exit(webex_bulk::app::main());
}
