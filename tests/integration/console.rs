//! The console, through the real binary: on a terminal (stderr on a pseudo-terminal) a live line
//! per running shard and a status column coloured unless `NO_COLOR` says not to; everywhere, a
//! final table that times every phase and every command.

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
        assert!(
            line[commands_at..].split_whitespace().next().is_some_and(|t| t.ends_with('s')),
            "{line:?}"
        );
        assert!(line.contains(&format!("$ {command}")), "{line:?}");
    }
    assert!(lines[2].ends_with("(failed: exit code 4)"), "{}", lines[2]);
}

/// The cells of a table line, cut where the header's columns begin (padding is by characters).
fn cells(header: &str, line: &str) -> Vec<String> {
    let header: Vec<char> = header.chars().collect();
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != ' ' && (i == 0 || header[i - 1] == ' '))
        .collect();
    let line: Vec<char> = line.chars().collect();
    let cell = |from: usize, to: usize| {
        line[from.min(line.len())..to.min(line.len())].iter().collect::<String>().trim().to_owned()
    };
    let mut cells: Vec<String> = starts.windows(2).map(|w| cell(w[0], w[1])).collect();
    cells.push(cell(*starts.last().unwrap(), line.len()));
    cells
}

#[test]
fn each_instance_has_a_row_under_its_shard_with_its_boots_time_up_release_and_end() {
    let sandbox = Sandbox::new();
    let shards = support::instances_shard("auth") + "  - name: plain\n    run: \"true\"\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", &shards));
    let run = sandbox.run(&["run"]);
    run.expect(0);
    let err = run.stderr();
    let table: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("shard ")).collect();
    let header = table[0];
    let rows: Vec<Vec<String>> =
        table.iter().filter(|l| !l.contains("  $ ")).map(|l| cells(header, l)).collect();
    let names: Vec<&str> =
        rows.iter().map(|r| r[0].as_str()).take_while(|n| !n.is_empty()).collect();
    assert_eq!(
        names,
        ["shard", "auth", "i1 (auth tests)", "main", "i2", "plain"],
        "instances sit under their shard: {err}"
    );
    let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap();
    // shard, address, wait, boot, commands (time up), teardown (release), total, status (and problem)
    let (i1, main, i2) = (row("i1 (auth tests)"), row("main"), row("i2"));
    assert!(i1[1].starts_with("127.") && i1[1] != row("auth")[1], "an address of its own: {i1:?}");
    assert_eq!(main[1], row("auth")[1], "main is the shard's address: {main:?}");
    assert!(i1[2].is_empty(), "no wait of its own: {i1:?}");
    for r in [i1, main] {
        assert!(r[3].ends_with("s ×2"), "two boots, added up: {r:?}");
        assert!(
            r[4].ends_with('s') && r[5].ends_with('s') && r[6].ends_with('s'),
            "up, release and total timed: {r:?}"
        );
    }
    assert_eq!(i1[7], "stopped, released", "{i1:?}");
    assert_eq!(main[7], "killed, released", "{main:?}");
    assert!(
        i2[3].ends_with('s') && !i2[3].contains('×') && i2[4] == "-",
        "one boot, never up: {i2:?}"
    );
    assert_eq!(
        i2[7], "boot failed, released  Harper exited before it was ready: exit code 3",
        "{i2:?}"
    );
}

/// A listener of the test's own on `addr:9926`, so that the pool warns it skipped the address.
fn foreign_listener(addr: &str) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&std::net::SocketAddrV4::new(addr.parse().unwrap(), 9926).into())
        .expect("bind the foreign listener");
    socket.listen(8).unwrap();
    socket
}

#[test]
fn quiet_shows_only_failures_and_the_table() {
    let sandbox = Sandbox::new();
    let _listener = foreign_listener("127.0.63.2");
    let shards =
        "  - name: good\n    run: \"true\"\n  - name: bad\n    run: \"echo it broke; exit 3\"\n";
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "pool: {start: 127.0.63.2, count: 4, wait: 30s}\n", shards),
    );
    let run = |extra: &[&str]| {
        let output = sandbox
            .command()
            .arg("run")
            .args(extra)
            .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
            .output()
            .unwrap();
        support::Run { output, took: Duration::ZERO }
    };
    let loud = run(&[]);
    loud.expect(1);
    assert!(
        loud.stderr().contains("warning: [good] 127.0.63.2 skipped")
            || loud.stderr().contains("warning: [bad] 127.0.63.2 skipped"),
        "{}",
        loud.stderr()
    );

    let quiet = run(&["-q"]);
    quiet.expect(1);
    let err = quiet.stderr();
    assert!(!err.contains("warning"), "-q hides warnings: {err}");
    assert!(
        !err.contains("[good]") && !err.contains("acquired"),
        "-q hides what passed and how: {err}"
    );
    assert!(
        err.contains("[bad] FAILED in")
            && err.contains("── bad ──")
            && err.contains("  | it broke"),
        "the failure is shown: {err}"
    );
    assert!(err.contains("1 of 2 shard(s) passed"), "the table is shown: {err}");
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
