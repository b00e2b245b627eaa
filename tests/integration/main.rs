//! The integration tests, one binary with a module per area (each module says what belongs
//! in it). Every test runs the real binaries (`harper-shard`, `fake-harper`) in a sandbox of
//! its own, but `checks::publish`'s, which call the library against the stand-in Checks API the
//! binary's tests use too; what only checks rendering runs in-process in `src/report`.
//! `support` holds what they share, and checks that no two tests share a loopback address,
//! since they all run in this one process at once.

mod support;

mod boot_ahead;
mod boot_cache;
mod buildkite;
mod checks;
mod cli;
mod console;
mod control;
mod faults;
mod github;
mod html;
mod install;
mod keeper;
mod partitions;
mod plan_errors;
mod pool;
mod real_harper;
mod report;
mod retries;
mod run_fake;
mod schema;
