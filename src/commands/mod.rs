//! One file per `penguin` subcommand.

pub mod bench;
pub mod demo;
pub mod migrate;
pub mod serve;
pub mod sink;
