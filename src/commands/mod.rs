//! One file per `penguin` subcommand.

pub mod bench;
pub mod bench_ceiling;
pub mod bench_history;
pub mod bench_hot;
pub mod bench_idle;
pub mod bench_import;
pub mod bench_setup;
pub mod bench_stats;
pub mod bench_waiting;
pub mod config;
pub mod demo;
pub mod faults;
pub mod migrate;
pub mod secrets;
pub mod serve;
pub mod sink;
