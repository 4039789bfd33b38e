//! Where ticks go: the console, JSON Lines and CSV files, an HTTP endpoint, and the end-of-run
//! summary.

pub mod console;
pub mod files;
pub mod http;
pub mod summary;
