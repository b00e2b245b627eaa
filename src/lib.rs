//! harper-shard: run integration-test shards against real Harper servers, many at once on one
//! machine, with nothing left behind.
//!
//! The flow is visible in the module tree: a [`plan`] is loaded and resolved once; the [`run`]
//! scheduler leases an address from the [`pool`], starts Harper through [`harper`] under
//! [`supervise`], runs the shard's commands, tears everything down, and emits events that
//! [`report`] renders. Nothing below `run` prints. Process facts (`/proc`, tokens, port holders)
//! live in [`process`], which `pool` and `supervise` both stand on.

pub mod cases;
pub mod cli;
pub mod commands;
pub mod ctl;
pub mod exit;
pub mod harper;
#[cfg(test)]
mod layers;
pub mod plan;
pub mod pool;
pub mod private_dir;
pub mod process;
pub mod report;
pub mod run;
pub mod supervise;
pub mod table;
pub mod text;
