//! The console through the real binary, where only the binary shows it: on a terminal (stderr
//! on a pseudo-terminal) a live line per running shard redrawn in place and a status column
//! coloured unless `NO_COLOR` says not to; off a terminal no escape sequence at all; `-q` still
//! saying why a run could not start. What the console writes of a run (its lines, its table,
//! `-q`) is tested in-process from synthetic runs, in `src/report/console.rs`.

use crate::support;

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
        Terminal::start_with(sandbox, &[], env)
    }

    fn start_with(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        let size = nix::pty::Winsize { ws_row: 40, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
        let mut cmd = sandbox.command();
        cmd.arg("run")
            .args(args)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(pty.slave));
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
    let shards =
        "  - name: waiter\n    run: \"until [ -e go ]; do sleep 0.02; done\"\n    timeout: 60s\n";
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
            let elapsed = words
                .last()
                .and_then(|w| w.strip_suffix('s'))
                .is_some_and(|n| n.parse::<u64>().is_ok());
            l.contains("waiter")
                && l.contains("127.0.0.")
                && l.contains("$ until [ -e go ]")
                && l.contains("(1/1)")
                && elapsed
        })
    });
    sandbox.write("go", "");
    let (code, text) = terminal.finish();
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("[waiter] $ until"),
        "a live terminal does not also print the plain progress lines: {text}"
    );
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

/// Every escape sequence in `text` but the live lines' redrawing (cursor moves, erasing a line):
/// whatever colours, styles, titles or links.
fn escapes_but_redraws(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices('\x1b') {
        let rest = &text[at + 1..];
        let csi = rest
            .strip_prefix('[')
            .map(|r| r.find(|c: char| ('\x40'..='\x7e').contains(&c)).map(|end| &r[..=end]));
        match csi {
            Some(Some(seq)) if !seq.ends_with('m') => {}
            _ => found.push(rest.chars().take(12).collect()),
        }
    }
    found
}

#[test]
fn no_color_turns_every_colour_off_the_live_lines_included() {
    let sandbox = Sandbox::new();
    waiting_plan(&sandbox);
    // CLICOLOR_FORCE asks indicatif for colour, and it would give it: NO_COLOR wins, everywhere.
    let terminal = Terminal::start(&sandbox, &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]);
    sandbox.wait_for("the live line of the running command", Duration::from_secs(20), || {
        terminal.text().contains("$ until [ -e go ]")
    });
    sandbox.write("go", "");
    let (code, text) = terminal.finish();
    assert_eq!(code, 0, "{text}");
    let row = text.lines().find(|l| l.starts_with("waiter  127.0.0.")).expect("the table's row");
    assert!(row.trim_end().ends_with(" passed"), "{row:?}");
    assert_eq!(escapes_but_redraws(&text), Vec::<String>::new(), "{text:?}");
    let table = &text[text.rfind("\nshard ").expect("the table")..];
    assert!(
        !table.contains('\x1b'),
        "no escape byte at all once the live lines are gone: {table:?}"
    );
}

#[test]
fn quiet_still_says_why_a_run_could_not_start() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", "version: 1\nharper:\n  package: harperdb@0.0.0-test\nshards:\n  - name: a\n    run: \"true\"\n");
    let output = sandbox
        .command()
        .args(["run", "-q"])
        .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache"))
        .env("HARPER_SHARD_NPM", "/bin/false")
        .output()
        .unwrap();
    let run = support::Run { output, took: Duration::ZERO };
    run.expect(3);
    assert!(
        run.stderr().contains("error: cannot install Harper (harperdb@0.0.0-test)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn verbose_output_piped_carries_no_escape_sequences() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan(
            "ansi",
            "",
            "  - name: v\n    run: \"printf '\\\\033[31mred\\\\033[0m\\\\n'\"\n",
        ),
    );
    let run = sandbox.run(&["run", "-v"]);
    run.expect(0);
    let err = run.stderr();
    assert!(
        err.contains("[v] red") && err.contains("DEBUG"),
        "the relay and the tracing lines are there: {err}"
    );
    assert!(!err.contains('\x1b'), "no escape sequence off a terminal: {err:?}");
}

/// The text before `at` on its terminal line, as it stands once drawn: escape sequences
/// dropped, and only what follows the last carriage return (a redraw starts over).
fn drawn_before(text: &str, at: usize) -> String {
    let line = &text[text[..at].rfind('\n').map_or(0, |i| i + 1)..at];
    let mut plain = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            plain.push(c);
        } else if chars.next_if_eq(&'[').is_some() {
            while chars.next().is_some_and(|c| !('\x40'..='\x7e').contains(&c)) {}
        } else {
            chars.next();
        }
    }
    plain.rsplit('\r').next().unwrap_or_default().to_owned()
}

#[test]
fn verbose_tracing_lines_are_drawn_above_the_live_lines_not_into_them() {
    let sandbox = Sandbox::new();
    waiting_plan(&sandbox);
    let terminal = Terminal::start_with(&sandbox, &["-v"], &[]);
    sandbox.wait_for("the live line", Duration::from_secs(20), || {
        terminal.text().contains("$ until [ -e go ]")
    });
    sandbox.write("go", "");
    let (code, text) = terminal.finish();
    assert_eq!(code, 0, "{text}");
    // The release of the address is logged during teardown, while the shard's live line shows.
    let at = text
        .find(" released")
        .unwrap_or_else(|| panic!("the debug line of the address's release: {text:?}"));
    let before = drawn_before(&text, at);
    assert!(
        before.starts_with(|c: char| c.is_ascii_digit()) && before.contains("DEBUG"),
        "drawn into a live line: {before:?}"
    );
}
