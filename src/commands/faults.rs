//! `penguin faults`: the fault harness ([`crate::faults`]).

pub use crate::faults::{FaultsArgs, run};
