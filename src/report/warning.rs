//! A [`Warning`] as the person reading the log sees it: the one place where each kind of
//! warning becomes text, for the console's line, the record's list (report.json, the GitHub
//! annotations) and the commands that warn outside a run. A pool's notice says itself
//! ([`crate::pool::Notice`]).

use std::fmt;

use crate::run::events::Warning;

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Pool(notice) => write!(f, "{notice}"),
            Warning::UnknownTimings { path, shards } => {
                let names: Vec<&str> = shards.iter().map(String::as_str).collect();
                write!(
                    f,
                    "timings {} name {} shard(s) the plan does not have: {} (renamed or removed? their times are not used; `timings merge` drops them)",
                    path.display(),
                    shards.len(),
                    crate::plan::name_list(&names)
                )
            }
            Warning::QuarantineExpired { what, until, reason } => write!(
                f,
                "the quarantine of {what} ended on {until} ({reason}): its failures fail the run again; fix them, or move `until` in the plan's `quarantine`"
            ),
            Warning::NoSignalHandlers => {
                write!(
                    f,
                    "cannot install the signal handlers: a SIGINT or SIGTERM would not tear the shards down"
                )
            }
            Warning::PidsNotRecorded { error } => write!(
                f,
                "cannot record Harper's processes beside the address's lock ({error}): should this run die, the next run on the address cannot end them"
            ),
            Warning::LogNotKept { from, error } => {
                write!(f, "cannot keep {} in the report: {error}", from.display())
            }
            Warning::LogIncomplete { log, stream, bytes, error } => {
                let stream = match stream {
                    crate::supervise::Stream::Stdout => "stdout",
                    crate::supervise::Stream::Stderr => "stderr",
                };
                write!(f, "{bytes} bytes of {stream} are missing from {}: {error}", log.display())
            }
        }
    }
}
