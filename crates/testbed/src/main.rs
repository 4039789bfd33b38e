//! `testbed`: see the library's documentation.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "testbed=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = testbed::Config::parse();
    let running = match testbed::start(config).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("testbed: error: {error}");
            return ExitCode::from(2);
        }
    };
    println!("{}", running.startup_line());
    running
        .serve_until(async {
            // `docker stop` sends SIGTERM: as PID 1, the testbed must handle it to stop at once.
            match common::signals::Signals::install() {
                Ok(mut signals) => {
                    signals.next().await;
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        })
        .await;
    ExitCode::SUCCESS
}
