//! The console, through the real binary: on a terminal (stderr on a pseudo-terminal) a live line
//! per running shard and a status column coloured unless `NO_COLOR` says not to; everywhere, a
//! final table that times every phase and every command.

mod support;

use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Sandbox, fake_plan};

/// The binary's stderr, read from the terminal's other end as it comes.
struct Terminal {
    child: std::process::Child,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    fn start(sandbox: &Sandbox, env: &[(&str, &str)]) -> Terminal {
        let size = nix::pty::Winsize { ws_row: 40, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
        let mut cmd = sandbox.command();
        cmd.arg("run").env_remove("NO_COLOR").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(pty.slave));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start harper-shard");
        drop(cmd); // the last copy of the terminal's slave end in this process
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut master = std::fs::File::from(pty.master);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the binary (the last holder of the slave end) has exited.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { child, seen, reader: Some(reader) }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits for the binary to exit and the terminal to drain; returns everything it showed.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait for harper-shard");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread");
        }
        (status.code().unwrap_or(-1), self.text())
    }
}

fn waiting_plan(sandbox: &Sandbox) {
    let shards = "  - name: waiter\n    run: \"until [ -e go ]; do sleep 0.02; done\"\n    timeout: 60s\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
}

#[test]
fn a_running_shard_has_a_live_line_with_its_address_phase_and_elapsed_time() {
    let sandbox = Sandbox::new();
    waiting_plan(&sandbox);
    let terminal = Terminal::start(&sandbox, &[]);
    sandbox.wait_for("the live line of the running command", Duration::from_secs(20), || {
        // Each redraw of a live line starts after a carriage return.
        terminal.text().split(['\r', '\n']).any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let elapsed = words.last().and_then(|w| w.strip_suffix('s')).is_some_and(|n| n.parse::<u64>().is_ok());
            l.contains("waiter") && l.contains("127.0.0.") && l.contains("$ until [ -e go ]") && l.contains("(1/1)") && elapsed
        })
    });
    sandbox.write("go", "");
    let (code, text) = terminal.finish();
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("[waiter] $ until"), "a live terminal does not also print the plain progress lines: {text}");
}

#[test]
fn the_status_column_is_coloured_on_a_terminal() {
    let sandbox = Sandbox::new();
    waiting_plan(&sandbox);
    sandbox.write("go", "");
    let (code, text) = Terminal::start(&sandbox, &[]).finish();
    assert_eq!(code, 0, "{text}");
    let row = text.lines().find(|l| l.starts_with("waiter  127.0.0.")).expect("the table's row");
    assert!(row.trim_end().ends_with("\x1b[32mpassed\x1b[0m"), "{row:?}");
}

#[test]
fn no_color_turns_the_colour_off() {
    let sandbox = Sandbox::new();
    waiting_plan(&sandbox);
    sandbox.write("go", "");
    let (code, text) = Terminal::start(&sandbox, &[("NO_COLOR", "1")]).finish();
    assert_eq!(code, 0, "{text}");
    let row = text.lines().find(|l| l.starts_with("waiter  127.0.0.")).expect("the table's row");
    assert!(row.trim_end().ends_with(" passed") && !text.contains("\x1b[32m"), "{text:?}");
}


#[test]
fn the_final_table_times_each_command_of_a_shard_that_has_several() {
    let sandbox = Sandbox::new();
    let shards = "  - name: multi\n    run: [\"true\", \"echo second\", \"exit 4\"]\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
    let run = sandbox.run(&["run"]);
    run.expect(1);
    let err = run.stderr();
    let table: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("shard ")).collect();
    let commands_at = table[0].find("commands").expect("a commands column");
    let lines: Vec<&str> = table.iter().filter(|l| l.contains("  $ ")).copied().collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (line, command) in lines.iter().zip(["true", "echo second", "exit 4"]) {
        assert!(line[..commands_at].trim().is_empty(), "the time sits under `commands`: {line:?}");
        assert!(line[commands_at..].split_whitespace().next().is_some_and(|t| t.ends_with('s')), "{line:?}");
        assert!(line.contains(&format!("$ {command}")), "{line:?}");
    }
    assert!(lines[2].ends_with("(failed: exit code 4)"), "{}", lines[2]);
}
