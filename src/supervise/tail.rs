//! The last lines of a child's output, kept to explain a failure, and the line splitting they
//! are made of — both in bounded memory whatever the child prints.
//!
//! A kept line holds at most [`LINE_LIMIT`] bytes and says how many it left out; a line that
//! has not ended yet is never buffered past that, so a command that prints 300 MB without a
//! newline costs 4 KiB here. A tail holds at most its number of lines and [`TAIL_BYTES`] in all,
//! dropping the oldest first. Lines are stored made safe to show ([`crate::text`]): colour and
//! other escape sequences removed, control characters as visible stand-ins.
//!
//! Not for: the log files, which keep every byte (see `output`).

use std::collections::VecDeque;

use crate::text;

/// The most of one line that is kept.
pub const LINE_LIMIT: usize = 4 * 1024;
/// The most a tail keeps in all.
pub const TAIL_BYTES: usize = 64 * 1024;

/// Splits a stream of bytes into lines, keeping at most [`LINE_LIMIT`] bytes of each.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// Bytes of the current line past the limit, counted and dropped.
    cut: usize,
}

impl Lines {
    /// Feeds a chunk; `line` gets each line it completes, made safe to show.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(String)) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.take(&bytes[..end]);
            line(self.render());
            self.partial.clear();
            self.cut = 0;
            bytes = &bytes[end + 1..];
        }
        self.take(bytes);
    }

    /// The line begun but not ended, if any, as [`Lines::feed`] would give it.
    pub fn pending(&self) -> Option<String> {
        (!self.partial.is_empty() || self.cut > 0).then(|| self.render())
    }

    /// Ends the stream: the line begun but not ended, if any.
    pub fn finish(&mut self) -> Option<String> {
        let rest = self.pending();
        self.partial.clear();
        self.cut = 0;
        rest
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = LINE_LIMIT.saturating_sub(self.partial.len()).min(bytes.len());
        self.partial.extend_from_slice(&bytes[..room]);
        self.cut += bytes.len() - room;
    }

    fn render(&self) -> String {
        let raw = match self.partial.strip_suffix(b"\r") {
            Some(line) if self.cut == 0 => line,
            _ => &self.partial,
        };
        let mut line = text::neutralise_bytes(raw, false);
        let mut cut = self.cut;
        // Stand-ins are longer than the bytes they replace: the limit holds for the shown text.
        if line.len() > LINE_LIMIT {
            let end = text::prefix_within(&line, LINE_LIMIT).len();
            cut += line.len() - end;
            line.truncate(end);
        }
        if cut > 0 {
            line.push_str(&format!(" … ({cut} more bytes cut)"));
        }
        line
    }
}

/// The last lines of output, made safe to show, for explaining a failure.
#[derive(Debug)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    splitter: Lines,
    limit: usize,
}

impl Tail {
    /// Keeps the last `limit` lines (and at most [`TAIL_BYTES`]).
    pub fn new(limit: usize) -> Tail {
        Tail { lines: VecDeque::new(), bytes: 0, splitter: Lines::default(), limit }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let Tail { lines, bytes, splitter, limit } = self;
        splitter.feed(chunk, |line| {
            *bytes += line.len();
            lines.push_back(line);
            while lines.len() > *limit || *bytes > TAIL_BYTES {
                let Some(old) = lines.pop_front() else { break };
                *bytes -= old.len();
            }
        });
    }

    /// The kept lines, the unfinished last one included, within both limits.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        let mut bytes = self.bytes;
        if let Some(rest) = self.splitter.pending() {
            bytes += rest.len();
            out.push(rest);
        }
        let mut skip = out.len().saturating_sub(self.limit);
        bytes -= out[..skip].iter().map(String::len).sum::<usize>();
        while bytes > TAIL_BYTES && skip < out.len() {
            bytes -= out[skip].len();
            skip += 1;
        }
        out.split_off(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_stripped_of_colour() {
        let mut t = Tail::new(2);
        t.feed(b"one\n\x1b[31mtwo\x1b[0m\r\nthree\nfour-partial");
        assert_eq!(t.lines(), vec!["three".to_owned(), "four-partial".to_owned()]);
    }

    #[test]
    fn a_bare_cr_and_other_controls_are_kept_visible_not_live() {
        let mut t = Tail::new(5);
        t.feed(b"x\r::error title=Injected::pwn\nnul\0\x1b[2Jhere\n");
        assert_eq!(
            t.lines(),
            vec!["x␍::error title=Injected::pwn".to_owned(), "nul␀here".to_owned()]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_says_how_much_it_lost() {
        let mut t = Tail::new(5);
        let mut line = vec![b'a'; 10_000];
        line.push(b'\n');
        t.feed(&line);
        let lines = t.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(&"a".repeat(LINE_LIMIT)), "the start of the line is kept");
        assert!(
            lines[0].ends_with(&format!(" … ({} more bytes cut)", 10_000 - LINE_LIMIT)),
            "{}",
            &lines[0][LINE_LIMIT..]
        );
    }

    #[test]
    fn a_line_that_never_ends_is_not_buffered_past_the_limit() {
        let mut t = Tail::new(5);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            t.feed(&chunk);
        }
        assert!(
            t.splitter.partial.len() <= LINE_LIMIT
                && t.splitter.partial.capacity() <= 2 * LINE_LIMIT
        );
        let lines = t.lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with(&format!(" … ({} more bytes cut)", 160 * 64 * 1024 - LINE_LIMIT)),
            "{}",
            &lines[0][LINE_LIMIT..]
        );
    }

    #[test]
    fn a_tail_of_long_lines_stays_within_its_byte_budget() {
        let mut t = Tail::new(200);
        let line = [vec![b'y'; 100_000], vec![b'\n']].concat();
        for _ in 0..60 {
            t.feed(&line);
        }
        let lines = t.lines();
        let total: usize = lines.iter().map(String::len).sum();
        assert!(total <= TAIL_BYTES, "{total}");
        assert!(lines.len() >= 10, "the newest lines are kept: {}", lines.len());
    }

    #[test]
    fn lines_hands_over_each_line_and_the_unfinished_rest() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        lines.feed(b"a\r\nb", |l| seen.push(l));
        lines.feed(b"c\nd", |l| seen.push(l));
        assert_eq!(seen, ["a", "bc"]);
        assert_eq!(lines.finish().as_deref(), Some("d"));
        assert_eq!(lines.finish(), None);
    }
}
