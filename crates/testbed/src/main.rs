//! `testbed`: see the library's documentation.

use std::io::Write;
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
    // Before the startup line, which tells a supervisor (or a test) it may signal: `docker stop`
    // sends SIGTERM, and as PID 1 the testbed must handle it to stop at once.
    let signals = common::signals::Signals::install();
    println!("{}", running.startup_line());
    let answered = running
        .serve_until(async {
            match signals {
                Ok(mut signals) => {
                    signals.next().await;
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        })
        .await;
    // What a test (or a user) checks a load tester's totals against, when the testbed runs in
    // a container it cannot reach into.
    // Written, not printed: a reader that went away (`testbed | head -1`) is no panic.
    let _ = writeln!(
        std::io::stdout(),
        "testbed stopped: {answered} requests answered"
    );
    ExitCode::SUCCESS
}
