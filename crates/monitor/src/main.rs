//! `monitor`: see the library's documentation.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The stack tunnel's forwarder (`monitor __tunnel LISTEN TO`), never shown in --help.
    monitor::tunnel::main_if_asked().unwrap_or_else(run)
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> ExitCode {
    monitor::run(monitor::cli::Cli::parse()).await
}
