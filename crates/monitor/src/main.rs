//! `monitor`: see the library's documentation.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    monitor::run(monitor::cli::Cli::parse()).await
}
