//! A plain-text table for people: each column as wide as its widest cell, measured in terminal
//! columns (a CJK character or an emoji takes two, a combining accent none), two spaces between
//! columns, no trailing blanks. The console's final table and `pool status` both draw with it.
//!
//! Not comfy-table: both tables hang lines off a column's position — a command's time under
//! `commands`, an instance directory under the second column, an instance's problem after its
//! status — and the console colours a cell after it was measured plain. With comfy-table those
//! lines would still be drawn by hand from widths read back out of it, and its borderless preset
//! pads and trails the rows differently from the output people and scripts already read.
//!
//! Not for: markdown tables (`report::summary`) or making text safe to show (`text`): cells
//! are measured as given.

use unicode_width::UnicodeWidthStr;

/// Columns measured over every row that will be drawn, then drawn row by row.
#[derive(Debug, Clone)]
pub struct Table {
    widths: Vec<usize>,
}

/// Between two columns.
const GAP: usize = 2;

impl Table {
    /// A table of `header`'s columns, at least as wide as its cells.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Table {
        Table { widths: header.iter().map(|h| width(h.as_ref())).collect() }
    }

    /// Keeps each column at least as wide as `min` says, so that short contents line up the
    /// same from one run to the next.
    pub fn at_least(mut self, min: &[usize]) -> Table {
        for (w, m) in self.widths.iter_mut().zip(min) {
            *w = (*w).max(*m);
        }
        self
    }

    /// Widens the columns to fit `cells`.
    pub fn fit<S: AsRef<str>>(&mut self, cells: &[S]) {
        for (w, cell) in self.widths.iter_mut().zip(cells) {
            *w = (*w).max(width(cell.as_ref()));
        }
    }

    /// The width of `column`.
    pub fn width(&self, column: usize) -> usize {
        self.widths.get(column).copied().unwrap_or(0)
    }

    /// The terminal column where `column` begins.
    pub fn start(&self, column: usize) -> usize {
        self.widths.iter().take(column).map(|w| w + GAP).sum()
    }

    /// One row: every cell but the last padded to its column, the last as it is — so that it may
    /// carry colour, or run on past its column — and no blanks at the end.
    pub fn line<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            if i + 1 < cells.len() {
                line.push_str(&pad(cell, self.width(i)));
                line.push_str(&" ".repeat(GAP));
            } else {
                line.push_str(cell);
            }
        }
        line.truncate(line.trim_end().len());
        line
    }
}

/// How many terminal columns `text` takes.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` with blanks after it up to `columns` terminal columns.
pub fn pad(text: &str, columns: usize) -> String {
    format!("{text}{}", " ".repeat(columns.saturating_sub(width(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_with_two_blanks_between() {
        let mut table = Table::new(&["shard", "status"]);
        table.fit(&["a-long-name", "passed"]);
        assert_eq!(table.line(&["shard", "status"]), "shard        status");
        assert_eq!(table.line(&["a-long-name", "passed"]), "a-long-name  passed");
        assert_eq!(table.start(1), 13);
    }

    #[test]
    fn wide_and_combining_characters_are_measured_by_the_columns_they_take() {
        let mut table = Table::new(&["name", "x"]);
        // Two columns each for the CJK characters and the emoji; none for the combining accent.
        for name in ["認証テスト", "🚀 launch", "cafe\u{301}"] {
            table.fit(&[name, "x"]);
        }
        assert_eq!(table.width(0), 10);
        for name in ["認証テスト", "🚀 launch", "cafe\u{301}", "plain"] {
            let line = table.line(&[name, "x"]);
            assert_eq!(width(&line), 13, "{line:?}");
            assert!(line.ends_with("  x"), "{line:?}");
        }
    }

    #[test]
    fn the_last_cell_is_not_padded_and_no_line_ends_in_blanks() {
        let table = Table::new(&["a", "bbbb", "c"]).at_least(&[3, 0, 0]);
        assert_eq!(table.line(&["x", "", ""]), "x");
        assert_eq!(table.line(&["x", "y", "\x1b[32mok\x1b[0m"]), "x    y     \x1b[32mok\x1b[0m");
        assert_eq!(table.start(2), 11);
    }
}
