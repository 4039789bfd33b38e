//! The process's exit codes, which every driver chooses from (headless, web, worker). A leaf
//! below them, so that no driver reaches up to the crate root; the root re-exports them.

/// Exit code when every target is met.
pub const EXIT_OK: u8 = 0;
/// Exit code when a target is missed.
pub const EXIT_TARGET_MISSED: u8 = 1;
/// Exit code for an error in the tool or its input.
pub const EXIT_ERROR: u8 = 2;
