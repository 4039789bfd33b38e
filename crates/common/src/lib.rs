//! What every tool of the workspace reads and prints the same way. Each binary once had its own
//! duration parser and its own URL redactor, and they disagreed (`-t 1.5` was 1.5 s for one
//! tool and an error for another; a Redis token was masked by one and printed by the other).

#![deny(missing_docs)]

pub mod duration;
pub mod redact;
pub mod signals;
