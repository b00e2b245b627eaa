//! A plan error that a person can act on: which file, where in it, which field, what value, and
//! what to do instead — rendered with the offending line under a caret.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: PathBuf,
    /// 1-based line and column, where the parser or a `Spanned` field knows them.
    pub at: Option<(u64, u64)>,
    /// The field path (`shards[2].name`) where it helps more than, or stands in for, a line.
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// The line of the file the error points at, for the caret rendering.
    pub source_line: Option<String>,
}

impl PlanError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        PlanError {
            file: file.to_path_buf(),
            at: None,
            field: None,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    pub fn at(mut self, line: u64, column: u64) -> Self {
        if line > 0 {
            self.at = Some((line, column.max(1)));
        }
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the text of the line the error points at.
    pub fn with_source(mut self, source: &str) -> Self {
        if let Some((line, _)) = self.at {
            self.source_line = source.lines().nth((line - 1) as usize).map(str::to_owned);
        }
        self
    }
}

impl PlanError {
    /// The error without the caret rendering, on one line: for an answer on the control socket.
    pub fn one_line(&self) -> String {
        let mut line = String::new();
        if let Some(field) = &self.field {
            line.push_str(&format!("{field}: "));
        }
        line.push_str(&self.message);
        // One line of JSON has no lines to point at: what stands around the column instead.
        if let (Some((_, column)), Some(text)) = (self.at, &self.source_line) {
            let chars: Vec<char> = text.chars().collect();
            let at = (column as usize).saturating_sub(1).min(chars.len());
            let near: String =
                chars[at.saturating_sub(24)..(at + 12).min(chars.len())].iter().collect();
            line.push_str(&format!(", at `{near}`"));
        }
        if let Some(hint) = &self.hint {
            line.push_str(&format!(" ({hint})"));
        }
        line
    }
}

/// The most of the quoted source line shown, unless the column is further on…
const SHOWN_CHARS: usize = 120;
/// …then this much past it.
const SHOWN_PAST_COLUMN: usize = 40;

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some((line, column)), Some(text)) = (self.at, &self.source_line) {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let caret = " ".repeat(column.saturating_sub(1) as usize);
            // A line of kilobytes (a long value) is shown up to a little past the column.
            let keep = (column as usize + SHOWN_PAST_COLUMN).max(SHOWN_CHARS);
            let text = match text.char_indices().nth(keep) {
                Some((end, _)) => format!("{}…", &text[..end]),
                None => text.clone(),
            };
            write!(f, "\n{pad} |\n{line} | {text}\n{pad} | {caret}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}
