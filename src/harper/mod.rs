//! Harper itself: getting a runnable copy ([`install`], npm run under `supervise` on the node
//! [`runtime`] finds), the exact command, arguments, directories and environment of one instance
//! ([`instance`]), and booting instances from a cached, stopped install ([`template`]) with what
//! Node compiled for it kept ([`boot_cache`]).

pub mod boot_cache;
pub mod cache;
pub mod install;
pub mod layout;
pub mod lock;
pub mod runtime;
pub mod template;
