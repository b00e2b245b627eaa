//! `harper-shard ctl`: one request to the shard's control socket (docs/control.md), its answer
//! printed. Exit 0 when the answer is `ok`, 1 when it is not, 2 outside a shard.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use anyhow::anyhow;
use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::cli::{CtlArgs, CtlOp};
use crate::exit::{Exit, Failure};
use crate::report::say::Say;
use crate::run::protocol::{
    Answer, CONTROL_VAR, GraceMs, Id, InstanceInfo, Label, Listed, Request, Start,
};

/// The longest answer read: an instance list of a shard at its limit fits many times over.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

pub fn run(args: CtlArgs, say: &Say) -> Result<Exit, Failure> {
    let request = request(&args).map_err(Failure::usage)?;
    let outside = || "`harper-shard ctl` works only inside a shard's command, where harper-shard sets HARPER_SHARD_CONTROL: run it from a `run:` command of a plan (harper-shard run PLAN)";
    let Some(path) = std::env::var_os(CONTROL_VAR).filter(|p| !p.is_empty()) else {
        return Err(Failure::usage(anyhow!("{CONTROL_VAR} is not set. {}", outside())));
    };
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        Failure::usage(anyhow!(
            "nothing answers on {} ({e}). {}",
            path.to_string_lossy(),
            outside()
        ))
    })?;
    let exchange = (|| {
        stream.write_all(format!("{}\n", serde_json::to_string(&request)?).as_bytes())?;
        let mut line = String::new();
        BufReader::new(std::io::Read::take(&stream, MAX_ANSWER)).read_line(&mut line)?;
        std::io::Result::Ok(line)
    })();
    let line = exchange.map_err(|e| Failure::infrastructure(anyhow!("the control socket: {e}")))?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| {
        Failure::infrastructure(anyhow!(
            "the control socket answered something that is not JSON ({e}): {}",
            crate::text::one_line(&line)
        ))
    })?;
    if args.json {
        say.answer(crate::report::say::json(&answer, false));
    }
    let answer = Answer::deserialize(&answer).map_err(|e| {
        Failure::infrastructure(anyhow!(
            "the control socket answered something that is not a control answer ({e}): {}",
            crate::text::one_line(&line)
        ))
    })?;
    let Answer::Error(refusal) = answer else {
        if !args.json {
            for line in readable(&answer) {
                say.answer(crate::text::one_line(&line));
            }
        }
        return Ok(Exit::Passed);
    };
    let mut why = refusal.error;
    if !refusal.tail.is_empty() {
        why.push_str(&format!("\nHarper's last lines:\n{}", refusal.tail.join("\n")));
    }
    Err(Failure { exit: Exit::ShardFailed, error: anyhow!(why) })
}

fn request(args: &CtlArgs) -> anyhow::Result<Request> {
    if args.new && args.op != CtlOp::Start {
        anyhow::bail!("--new is for `start`: `harper-shard ctl start --new`");
    }
    if args.name.is_some() && !args.new {
        anyhow::bail!("--name is for a new instance: `harper-shard ctl start --new --name LABEL`");
    }
    if !args.set.is_empty() && args.op != CtlOp::Start {
        anyhow::bail!(
            "--set is for `start`: a new instance's Harper keys (`start --new --set KEY=VALUE`), or the Harper a stopped one boots next (`start --id ID --set package=SPEC`)"
        );
    }
    if args.grace.is_some() && !matches!(args.op, CtlOp::Stop | CtlOp::Restart) {
        anyhow::bail!("--grace is for `stop` and `restart`");
    }
    // On the socket, a `start` without `id` is a new instance; here `--new` says so.
    let id = match (&args.id, args.new) {
        (Some(id), _) => Some(Id(id.clone())),
        (None, false) if args.op != CtlOp::Status => Some(Id(crate::run::context::MAIN.to_owned())),
        _ => None,
    };
    let grace_ms = args.grace.map(GraceMs);
    Ok(match args.op {
        CtlOp::Status => Request::Status { id },
        CtlOp::Start => Request::Start(Start {
            id,
            name: args.name.clone().map(Label),
            harper: harper_keys(&args.set)?,
        }),
        CtlOp::Stop => Request::Stop { id, grace_ms },
        CtlOp::Restart => Request::Restart { id, grace_ms },
        CtlOp::Kill => Request::Kill { id },
        CtlOp::Release => Request::Release { id },
    })
}

/// The Harper keys of `--set KEY=VALUE`…: a value that is not JSON is a string.
fn harper_keys(sets: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut keys = Map::new();
    for set in sets {
        let Some((key, value)) = set.split_once('=') else {
            anyhow::bail!("--set `{set}` is not KEY=VALUE: e.g. --set 'env={{\"FOO\":\"1\"}}'");
        };
        if ["op", "id", "name"].contains(&key) {
            anyhow::bail!("--set `{key}` is not a Harper key: use the flag for it");
        }
        let mut value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        // The tool resolves a relative path from the plan's folder; whoever types one means this one.
        if key == "bin"
            && let Some(path) = value.as_str().map(std::path::Path::new).filter(|p| p.is_relative())
        {
            let absolute = std::path::absolute(path).map_err(|e| {
                anyhow!("--set bin={}: cannot tell the current folder ({e})", path.display())
            })?;
            let Some(text) = absolute.to_str() else {
                anyhow::bail!(
                    "--set bin={}: the current folder's path is not UTF-8; give bin as an absolute path",
                    path.display()
                );
            };
            value = Value::from(text);
        }
        keys.insert(key.to_owned(), value);
    }
    Ok(keys)
}

/// An answer in lines a person reads: one per instance.
fn readable(answer: &Answer) -> Vec<String> {
    let one = |i: &InstanceInfo| {
        let state = serde_json::to_value(i.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pid = i.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        format!("{} {state} {} {}{pid}", i.id, i.hostname, i.operations_url)
    };
    match answer {
        Answer::Instance { instance, .. } => vec![one(instance)],
        Answer::Instances { instances, .. } => instances
            .iter()
            .map(|listed| match listed {
                Listed::Info(i) => one(i),
                Listed::Busy { id, .. } => format!("{id} busy - -"),
            })
            .collect(),
        Answer::Released { id, .. } => vec![format!("{id} released")],
        Answer::Error(_) => Vec::new(),
    }
}
