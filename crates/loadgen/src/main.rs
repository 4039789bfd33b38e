//! `loadgen`: see the library's documentation.

use std::process::ExitCode;

use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    // The stack tunnel's forwarder (`loadgen __tunnel LISTEN TO`), never shown in --help.
    if let Some(code) = monitor::tunnel::main_if_asked() {
        return code;
    }
    let cli = match loadgen::cli::config_file::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(loadgen::cli::config_file::ParseError::Flags(error)) => error.exit(),
        Err(error) => {
            eprintln!("loadgen: error: {error}");
            return ExitCode::from(loadgen::EXIT_ERROR);
        }
    };
    // Locust's logger names (`locust.main`, `locust.runners`) for the messages Locust also
    // logs, loadgen's module paths for its own.
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "loadgen={level},locust={level}",
        level = cli.loglevel
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("loadgen=warn,locust=warn"));
    let format = loadgen::logging::Formatter::new(cli.log_format);
    // The web UI's Logs tab keeps the last lines too (not headless: it costs a second format),
    // in Locust's form as its `/logs` serves them.
    let ring = (!cli.headless).then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(loadgen::logging::Formatter::new(
                loadgen::logging::LogFormat::Locust,
            ))
            .with_writer(loadgen::web::logs::RingWriter::new)
    });
    let log = tracing_subscriber::registry().with(filter).with(ring);
    match &cli.logfile {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => log
                .with(
                    tracing_subscriber::fmt::layer()
                        .event_format(format)
                        .with_writer(std::sync::Mutex::new(file)),
                )
                .init(),
            Err(error) => {
                eprintln!("loadgen: error: --logfile {}: {error}", path.display());
                return ExitCode::from(loadgen::EXIT_ERROR);
            }
        },
        None => log
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(format)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    // A small runtime for the controller; the users run on their own threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: error: cannot start the runtime: {error}");
            return ExitCode::from(loadgen::EXIT_ERROR);
        }
    };
    let code = runtime.block_on(loadgen::run(cli));
    // The outcome is in and its files are written: a request still waiting on a thread of its
    // own (a health check that a signal cut short) must not hold the exit for its timeout.
    runtime.shutdown_background();
    code
}
