//! The `penguin` binary's library: `src/main.rs` only parses the command line and
//! calls into [`commands`], one file per subcommand. [`node`] starts a whole engine
//! node in-process (serve, demo, bench and the end-to-end tests use it); [`faults`]
//! is the fault harness of `penguin faults`.

pub mod client;
pub mod commands;
pub mod faults;
pub mod logging;
pub mod node;
mod node_twin;
pub mod scenario;
