//! One file per `penguin` subcommand.

pub mod bench;
pub mod bench_import;
pub mod demo;
pub mod faults;
pub mod migrate;
pub mod serve;
pub mod sink;
