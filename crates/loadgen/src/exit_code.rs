//! The process's exit codes, which every driver chooses from (headless, web, worker). A leaf
//! below them, so that no driver reaches up to the crate root; the root re-exports them.

/// Exit code when every target is met.
pub const EXIT_OK: u8 = 0;
/// Exit code when a target is missed.
pub const EXIT_TARGET_MISSED: u8 = 1;
/// Exit code for an error in the tool or its input.
pub const EXIT_ERROR: u8 = 2;
/// Exit code of `loadgen import` when part of the source was not translated (the scenario is
/// written, with a comment at each such place).
pub const EXIT_PARTIAL: u8 = 3;

/// What the exit code of a run follows (`--exit-code-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExitCodeMode {
    /// 0 when every target is met, 1 when one is missed (--exit-code-on-error still wins when
    /// a request failed).
    #[default]
    Targets,
    /// Locust's: 1 (or --exit-code-on-error's value) when any request failed or the scenario
    /// had an error, else 0, whatever the targets say.
    Locust,
}

/// A finished run's exit code. `had_errors`: a request failed or the scenario had an error;
/// `passed`: every target was met. --exit-code-on-error's value wins when there were errors,
/// in both modes, as Locust's option does.
pub fn of_run(
    mode: ExitCodeMode,
    exit_code_on_error: Option<u8>,
    had_errors: bool,
    passed: bool,
) -> u8 {
    match (mode, exit_code_on_error, had_errors) {
        (_, Some(code), true) => code,
        (ExitCodeMode::Locust, None, true) => EXIT_TARGET_MISSED,
        (ExitCodeMode::Locust, _, false) => EXIT_OK,
        (ExitCodeMode::Targets, ..) if passed => EXIT_OK,
        (ExitCodeMode::Targets, ..) => EXIT_TARGET_MISSED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_and_exit_code_on_error() {
        use ExitCodeMode::{Locust, Targets};
        // (mode, --exit-code-on-error, had errors, targets met) -> code
        for (mode, on_error, errors, passed, code) in [
            (Targets, None, true, true, 0),
            (Targets, None, false, false, 1),
            (Targets, Some(3), true, true, 3),
            (Targets, Some(3), false, false, 1),
            (Locust, None, true, true, 1),
            (Locust, None, false, false, 0),
            (Locust, Some(0), true, false, 0),
            (Locust, Some(5), true, true, 5),
        ] {
            assert_eq!(
                of_run(mode, on_error, errors, passed),
                code,
                "{mode:?} {on_error:?} errors={errors} passed={passed}"
            );
        }
    }
}
