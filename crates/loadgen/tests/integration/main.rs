//! loadgen's integration tests, one binary (so that the testbed and its server stack are linked
//! once, not once per file): loadgen against the testbed on real PostgreSQL and Redis over
//! loopback, through the same `run` the binary calls, and the binary itself where signals and
//! exit codes matter.

#![allow(clippy::unwrap_used)]
// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

mod accounting;
mod bad_input;
mod busy_host;
mod capacity;
mod capacity_reports;
mod capacity_web;
mod celery;
mod certificates;
mod ci;
mod cli;
mod cluster;
mod cluster_containers;
mod container;
mod deploy;
mod diagnosis;
mod docker;
mod engine;
mod env;
mod failures;
mod false_alarms;
mod fuzz;
mod http_semantics;
mod import_locust;
mod imports;
mod locust_compat;
mod locust_master;
mod loopback;
mod master_guard;
mod on_stop;
mod open_model;
mod polls;
mod profiles;
mod python_postgres;
mod python_stack;
mod report;
mod secrets;
mod shapes;
mod stack;
mod stop;
mod support;
mod swarm;
mod timeline;
mod web;
mod web_guard;
