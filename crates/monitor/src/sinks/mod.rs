//! Where ticks go: the console, JSON Lines and CSV files, an HTTP endpoint, OTLP, and the
//! end-of-run summary.

pub mod console;
pub mod files;
pub mod http;
pub mod otlp;
pub mod summary;
