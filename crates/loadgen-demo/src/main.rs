//! `loadgen-demo` (also `loadgen demo`): the testbed with a planted bottleneck, loaded by
//! loadgen with the monitor on, then the summary, the findings and an HTML report. A binary of
//! its own so that the load generator links none of the testbed's server stack.

mod demo;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = demo::DemoArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen-demo: error: cannot start the runtime: {error}");
            return ExitCode::from(loadgen::EXIT_ERROR);
        }
    };
    match runtime.block_on(demo::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("loadgen-demo: error: {error:#}");
            ExitCode::from(loadgen::EXIT_ERROR)
        }
    }
}
