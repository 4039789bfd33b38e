//! `monitor`: samples Docker, PostgreSQL, Redis and the host at the same instant (see
//! `shared/DESIGN.md`). The sources are built in issue #4; this crate holds its place in the
//! workspace.
