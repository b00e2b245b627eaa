//! Text that came from elsewhere — a command's output, Harper's, a process name, a plan value —
//! made safe to show: escape sequences are removed and every other control character becomes a
//! visible stand-in (`␍`, `␀`, `␛`, …), so that nothing shown can move a terminal's cursor,
//! clear or rewrite what is already on the screen, or break a line where a reader of the log
//! would (GitHub's runner splits lines on a bare CR as well as on LF).
//!
//! Line feeds and tabs stay; a CR that ends a line (CRLF) is dropped. With `keep_sgr`, colour
//! sequences (`ESC [ … m`) pass, for output drawn on a colour terminal, and a line that set a
//! colour is reset before it ends so that nothing bleeds into the next one.
//!
//! Hand-written, not strip-ansi-escapes (tried on the cases tested below) nor vte, its parser:
//! strip-ansi-escapes drops a bare CR, tabs and other controls without a trace where this shows
//! a stand-in, lets DEL through and cannot keep colour; and in vte an OSC left unterminated
//! ignores line feeds, so one stray `ESC ]` swallows the whole rest of a command's output.
//! It handles CSI, OSC and the other control strings (DCS, SOS, PM, APC; ended by BEL or ST),
//! C1 controls in UTF-8, and sequences split across chunks.
//!
//! Not for: deciding what is a workflow command (`report::out`) or escaping markup
//! (`report::summary`); this only takes control away from text.

/// A streaming neutraliser: bytes in, safe bytes out, sequences split across chunks handled.
/// Valid UTF-8 in gives valid UTF-8 out (only ASCII controls, their sequences and UTF-8-encoded
/// C1 controls are touched).
#[derive(Debug, Clone)]
pub struct Neutralizer {
    state: State,
    keep_sgr: bool,
    /// The escape sequence being read, kept to pass it on if it turns out to be a colour.
    seq: Vec<u8>,
    /// A colour was passed on this line: reset it before the line ends.
    coloured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// After ESC.
    Esc,
    /// After ESC and intermediate bytes (`ESC ( B`).
    EscIntermediate,
    /// Inside `ESC [ …`.
    Csi,
    /// Inside a control string (OSC, DCS, SOS, PM, APC), until BEL or ST.
    Str,
    /// After ESC inside a control string.
    StrEsc,
    /// After a CR: a line end if LF follows.
    Cr,
    /// After 0xC2, the lead byte of U+0080–U+00BF (the C1 controls among them).
    C2,
}

/// A colour sequence is short; anything longer is not one.
const SEQ_LIMIT: usize = 32;

impl Neutralizer {
    pub fn new(keep_sgr: bool) -> Neutralizer {
        Neutralizer { state: State::Text, keep_sgr, seq: Vec::new(), coloured: false }
    }

    /// Neutralises `input`, appending the result to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Ends the input: whatever was left pending is shown or dropped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Cr => picture(b'\r', out),
            State::C2 => out.push(0xC2),
            State::Esc => picture(0x1b, out),
            _ => {}
        }
        self.state = State::Text;
        self.seq.clear();
        self.reset_colour(out);
    }

    fn reset_colour(&mut self, out: &mut Vec<u8>) {
        if self.coloured {
            out.extend_from_slice(b"\x1b[0m");
            self.coloured = false;
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Text => self.text(b, out),
            State::Cr => {
                self.state = State::Text;
                if b != b'\n' {
                    picture(b'\r', out);
                }
                self.text(b, out);
            }
            State::C2 => {
                self.state = State::Text;
                if (0x80..=0x9f).contains(&b) {
                    out.extend_from_slice("\u{FFFD}".as_bytes());
                } else {
                    out.push(0xC2);
                    self.text(b, out);
                }
            }
            State::Esc => match b {
                b'[' => {
                    self.state = State::Csi;
                    self.seq.clear();
                    self.seq.extend_from_slice(b"\x1b[");
                }
                b']' | b'P' | b'X' | b'^' | b'_' => self.state = State::Str,
                0x20..=0x2f => self.state = State::EscIntermediate,
                0x30..=0x7e => self.state = State::Text,
                _ => {
                    // Not a sequence after all: show the ESC, then take the byte as text.
                    self.state = State::Text;
                    picture(0x1b, out);
                    self.text(b, out);
                }
            },
            State::EscIntermediate => match b {
                0x20..=0x2f => {}
                0x30..=0x7e => self.state = State::Text,
                _ => {
                    self.state = State::Text;
                    self.text(b, out);
                }
            },
            State::Csi => match b {
                0x20..=0x3f => {
                    if self.seq.len() < SEQ_LIMIT {
                        self.seq.push(b);
                    } else {
                        self.seq.clear();
                    }
                }
                0x40..=0x7e => {
                    self.state = State::Text;
                    let params = self.seq.get(2..).unwrap_or_default();
                    let colour = b == b'm'
                        && !self.seq.is_empty()
                        && params.iter().all(|c| c.is_ascii_digit() || *c == b';' || *c == b':');
                    if colour && self.keep_sgr {
                        out.extend_from_slice(&self.seq);
                        out.push(b'm');
                        self.coloured = !matches!(params, b"" | b"0");
                    }
                    self.seq.clear();
                }
                // A control inside a sequence ends it; the control is taken on its own.
                _ => {
                    self.state = State::Text;
                    self.seq.clear();
                    self.text(b, out);
                }
            },
            State::Str => match b {
                0x07 => self.state = State::Text,
                0x1b => self.state = State::StrEsc,
                // An unterminated string must not swallow every line after it.
                b'\n' => {
                    self.state = State::Text;
                    self.text(b, out);
                }
                _ => {}
            },
            State::StrEsc => {
                self.state = State::Text;
                if b != b'\\' {
                    self.state = State::Esc;
                    self.byte(b, out);
                }
            }
        }
    }

    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\n' => {
                self.reset_colour(out);
                out.push(b'\n');
            }
            b'\t' => out.push(b),
            b'\r' => self.state = State::Cr,
            0x1b => self.state = State::Esc,
            0x00..=0x1f | 0x7f => picture(b, out),
            0xC2 => self.state = State::C2,
            _ => out.push(b),
        }
    }
}

/// The Unicode control picture of an ASCII control: `␀` … `␟`, `␡`.
fn picture(b: u8, out: &mut Vec<u8>) {
    let c = match b {
        0x7f => '\u{2421}',
        _ => char::from_u32(0x2400 + u32::from(b)).unwrap_or('\u{FFFD}'),
    };
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `text` without escape sequences, its controls (but LF and tab) shown as stand-ins.
pub fn neutralise(text: &str) -> String {
    neutralise_bytes(text.as_bytes(), false)
}

/// As [`neutralise`], for bytes that may not be UTF-8 (invalid sequences become `�`).
pub fn neutralise_bytes(bytes: &[u8], keep_sgr: bool) -> String {
    let mut n = Neutralizer::new(keep_sgr);
    let mut out = Vec::with_capacity(bytes.len());
    n.feed(bytes, &mut out);
    n.finish(&mut out);
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// As [`neutralise`], on one line: line feeds become spaces.
pub fn one_line(text: &str) -> String {
    neutralise(text).replace('\n', " ")
}

/// The longest start of `text` that is at most `max` bytes and ends on a character boundary.
pub fn prefix_within(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_within_cuts_on_a_character_boundary() {
        assert_eq!(prefix_within("abc", 3), "abc");
        assert_eq!(prefix_within("abcd", 3), "abc");
        // `é` is two bytes: it straddles the limit and goes whole.
        assert_eq!(prefix_within("abé", 3), "ab");
        assert_eq!(prefix_within("€", 2), "");
    }

    #[test]
    fn a_bare_cr_is_shown_and_a_crlf_is_a_line_end() {
        assert_eq!(neutralise("x\r::error::pwn\r\nnext\r"), "x␍::error::pwn\nnext␍");
    }

    #[test]
    fn escape_sequences_are_removed_whole() {
        assert_eq!(neutralise("a\x1b[2J\x1b[Hb\x1b]0;title\x07c\x1b(Bd\x1bce"), "abcde");
        assert_eq!(neutralise("\x1b[31mred\x1b[0m"), "red");
    }

    #[test]
    fn other_controls_become_pictures() {
        assert_eq!(neutralise("nul\0 bell\x07 del\x7f tab\tok"), "nul␀ bell␇ del␡ tab\tok");
        assert_eq!(neutralise("c1 \u{9b}2J \u{85}"), "c1 \u{FFFD}2J \u{FFFD}");
        assert_eq!(neutralise("é ü ✓"), "é ü ✓");
    }

    #[test]
    fn colour_passes_only_when_kept_and_is_reset_at_the_line_end() {
        assert_eq!(neutralise_bytes(b"\x1b[32mok\nnext", true), "\x1b[32mok\x1b[0m\nnext");
        assert_eq!(neutralise_bytes(b"\x1b[32mok\x1b[2K", true), "\x1b[32mok\x1b[0m");
        assert_eq!(neutralise_bytes(b"\x1b[32mok", false), "ok");
    }

    #[test]
    fn sequences_split_across_chunks_are_still_removed() {
        let mut n = Neutralizer::new(false);
        let mut out = Vec::new();
        for chunk in [&b"a\x1b"[..], b"[2", b"Jb\r", b"\nc\xc2", b"\x9bd"] {
            n.feed(chunk, &mut out);
        }
        n.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "ab\nc\u{FFFD}d");
    }

    #[test]
    fn osc_hyperlinks_and_titles_are_removed_whether_bel_or_st_ends_them() {
        assert_eq!(
            neutralise("\x1b]8;;https://example.com/x\x07link\x1b]8;;\x07 after"),
            "link after"
        );
        assert_eq!(
            neutralise("\x1b]8;id=1;https://example.com\x1b\\link\x1b]8;;\x1b\\ after"),
            "link after"
        );
        assert_eq!(neutralise("\x1b]0;a title\x07x\x1b]2;another\x1b\\y"), "xy");
        // Kept colour is colour only: a hyperlink or a title never passes.
        assert_eq!(
            neutralise_bytes(b"\x1b]8;;u\x07\x1b[32mok\x1b[0m\x1b]8;;\x07", true),
            "\x1b[32mok\x1b[0m"
        );
    }

    #[test]
    fn csi_sequences_of_every_kind_are_removed_and_a_control_inside_one_ends_it() {
        assert_eq!(
            neutralise("a\x1b[2Jb\x1b[10;20Hc\x1b[?25ld\x1b[1;31me\x1b[38:5:196mf"),
            "abcdef"
        );
        assert_eq!(neutralise("a\x1b[31\nb"), "a\nb");
    }

    #[test]
    fn an_unterminated_escape_at_the_end_leaves_nothing_that_can_act() {
        assert_eq!(neutralise("end\x1b"), "end␛", "a lone ESC is shown");
        assert_eq!(neutralise("end\x1b[31"), "end");
        assert_eq!(neutralise("end\x1b]8;;https://example.com"), "end");
        assert_eq!(neutralise("end\x1b]0;title\x1b"), "end");
        assert_eq!(neutralise_bytes(b"end\xc2", false), "end\u{FFFD}");
        // The colour a cut-off line had set is reset.
        assert_eq!(neutralise_bytes(b"\x1b[32mok\x1b[", true), "\x1b[32mok\x1b[0m");
    }

    #[test]
    fn an_unterminated_control_string_ends_at_the_line() {
        assert_eq!(neutralise("a\x1b]8;;http://x\nvisible"), "a\nvisible");
    }
}
