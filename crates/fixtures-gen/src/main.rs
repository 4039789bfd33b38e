//! `fixtures-gen`: see the library's documentation.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fixtures_gen::cli::Cli::parse();
    match fixtures_gen::cli::run(&cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fixtures-gen: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
