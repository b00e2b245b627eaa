//! Harper itself: getting a runnable copy ([`install`]) and the exact command, arguments,
//! directories and environment of one instance ([`instance`]). Nothing here starts a process;
//! `supervise` does that.

pub mod install;
pub mod instance;
