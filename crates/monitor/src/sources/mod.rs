//! One file per source, each behind [`crate::source::Source`].

pub mod docker;
pub mod host;
pub mod postgres;
pub mod redis;
