//! `harper-shard ctl`: one request to the shard's control socket (docs/control.md), its answer
//! printed. Exit 0 when the answer is `ok`, 1 when it is not, 2 outside a shard.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use anyhow::anyhow;
use serde_json::{Map, Value, json};

use crate::cli::{CtlArgs, CtlOp};
use crate::exit::{Exit, Failure};
use crate::report::say::Say;
use crate::run::control::CONTROL_VAR;

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
        stream.write_all(format!("{request}\n").as_bytes())?;
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
    let ok = answer.get("ok") == Some(&Value::Bool(true));
    if args.json {
        say.answer(crate::report::say::json(&answer, false));
    } else if ok {
        for line in readable(&answer) {
            say.answer(crate::text::one_line(&line));
        }
    }
    if ok {
        return Ok(Exit::Passed);
    }
    let mut why = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the control socket said no")
        .to_owned();
    if let Some(tail) = answer.get("tail").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        let lines: Vec<&str> = tail.iter().filter_map(Value::as_str).collect();
        why.push_str(&format!("\nHarper's last lines:\n{}", lines.join("\n")));
    }
    Err(Failure { exit: Exit::ShardFailed, error: anyhow!(why) })
}

fn request(args: &CtlArgs) -> anyhow::Result<Value> {
    let op = match args.op {
        CtlOp::Status => "status",
        CtlOp::Start => "start",
        CtlOp::Stop => "stop",
        CtlOp::Restart => "restart",
        CtlOp::Kill => "kill",
        CtlOp::Release => "release",
    };
    let mut request = Map::new();
    request.insert("op".into(), json!(op));
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
    match (&args.id, args.new) {
        (Some(id), _) => drop(request.insert("id".into(), json!(id))),
        (None, false) if args.op != CtlOp::Status => {
            drop(request.insert("id".into(), json!(crate::run::context::MAIN)))
        }
        _ => {}
    }
    if let Some(grace) = args.grace {
        request.insert("grace_ms".into(), json!(grace.as_millis() as u64));
    }
    if let Some(name) = &args.name {
        request.insert("name".into(), json!(name));
    }
    for set in &args.set {
        let Some((key, value)) = set.split_once('=') else {
            anyhow::bail!("--set `{set}` is not KEY=VALUE: e.g. --set 'env={{\"FOO\":\"1\"}}'");
        };
        if ["op", "id", "name"].contains(&key) {
            anyhow::bail!("--set `{key}` is not a Harper key: use the flag for it");
        }
        let mut value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
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
            value = json!(text);
        }
        request.insert(key.to_owned(), value);
    }
    Ok(Value::Object(request))
}

/// An answer in lines a person reads: one per instance.
fn readable(answer: &Value) -> Vec<String> {
    let one = |i: &Value| {
        let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let pid =
            i.get("pid").and_then(Value::as_u64).map(|p| format!(" pid {p}")).unwrap_or_default();
        format!("{} {} {} {}{pid}", s("id"), s("state"), s("hostname"), s("operations_url"))
    };
    if let Some(i) = answer.get("instance") {
        vec![one(i)]
    } else if let Some(list) = answer.get("instances").and_then(Value::as_array) {
        list.iter().map(one).collect()
    } else if let Some(id) = answer.get("id").and_then(Value::as_str) {
        vec![format!("{id} released")]
    } else {
        Vec::new()
    }
}
