//! The signals that end a run: SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes, systemd) and
//! SIGHUP (a closed terminal) all mean "stop and keep what you have". Each tool stops its work on
//! the first and writes its results; a second one exits at once.
//!
//! The handlers are installed when [`Signals::install`] is called, so a tool calls it before its
//! work starts: a signal that came earlier would kill the process with nothing written, and as
//! PID 1 in a container a signal without a handler is ignored, which makes `docker stop` wait,
//! then kill.

use tokio::signal::unix::{Signal as Stream, SignalKind, signal};

/// A signal that ends a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP.
    Hangup,
}

impl Signal {
    /// `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Hangup => "SIGHUP",
        }
    }

    /// The shell's code for a process this signal killed (128 + its number), for an exit at
    /// once on the second signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
            Self::Hangup => 129,
        }
    }
}

/// The handlers of SIGINT, SIGTERM and SIGHUP.
pub struct Signals {
    interrupt: Stream,
    terminate: Stream,
    hangup: Stream,
}

impl Signals {
    /// Installs the handlers (inside a Tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.hangup.recv() => Signal::Hangup,
        }
    }

    /// Runs `on_first` on the first signal, then exits the process at once on the second.
    pub fn spawn_handler(
        mut self,
        tool: &'static str,
        on_first: impl FnOnce(Signal) + Send + 'static,
    ) {
        tokio::spawn(async move {
            let first = self.next().await;
            on_first(first);
            self.exit_on_next(tool).await;
        });
    }

    /// Exits the process at once on the next signal, printing `tool: SIGNAL again: exiting at
    /// once`: for the time a tool spends writing its results after the first.
    pub async fn exit_on_next(mut self, tool: &'static str) {
        let signal = self.next().await;
        eprintln!("\n{tool}: {} again: exiting at once", signal.name());
        std::process::exit(signal.exit_code());
    }
}
