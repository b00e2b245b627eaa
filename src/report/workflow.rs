//! GitHub Actions' workflow-command syntax, and whether this process is a GitHub Actions step:
//! the tool's own commands ([`Command`], annotations as [`Note`]), the escaping the runner
//! undoes, which lines the runner could take for a command ([`command_like`]), and the
//! `::stop-commands::` frame that keeps it from doing so.
//!
//! It sits below [`super::out`], which frames lines with it, and below the reporters and
//! [`super::say`], which build commands with it; it prints nothing itself.
//!
//! Not for: the GitHub reporter's groups, annotation budget and step files ([`super::github`]).

use crate::text;

/// Is this process a GitHub Actions step?
pub fn detected() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// A workflow command of the tool's own: `::name key=value,…::data`, escaped as the runner
/// unescapes it, with the control characters of what it quotes neutralised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    name: &'static str,
    properties: Vec<(&'static str, String)>,
    data: String,
}

impl Command {
    pub fn new(name: &'static str, data: impl Into<String>) -> Command {
        Command { name, properties: Vec::new(), data: data.into() }
    }

    pub fn property(mut self, key: &'static str, value: impl Into<String>) -> Command {
        self.properties.push((key, value.into()));
        self
    }

    /// The command's one line, without its line end.
    pub fn render(&self) -> String {
        let properties: Vec<String> = self
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_property(&text::neutralise(v))))
            .collect();
        let space = if properties.is_empty() { "" } else { " " };
        format!(
            "::{}{space}{}::{}",
            self.name,
            properties.join(","),
            escape_data(&text::neutralise(&self.data))
        )
    }
}

/// One annotation: its title, its message, and the file and line it points at.
#[derive(Debug, Clone)]
pub struct Note {
    pub title: String,
    pub message: String,
    pub at: Option<(String, u32)>,
}

impl Note {
    /// The annotation as a workflow command of type `level`.
    pub fn command(&self, level: &'static str) -> Command {
        let command = Command::new(level, self.message.clone());
        let command = match &self.at {
            Some((file, line)) => {
                command.property("file", file.clone()).property("line", line.to_string())
            }
            None => command,
        };
        command.property("title", self.title.clone())
    }
}

/// A workflow command's message: `%`, CR and LF escaped.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value: as [`escape_data`], and `:` and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Could GitHub's runner read this line as a workflow command? It tries `::name…::` after
/// leading blanks, then the older `##[name…]` anywhere in the line.
pub fn command_like(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.trim_start().starts_with("::") || text.contains("##[")
}

/// A fresh `::stop-commands::` frame: the line that opens it and the line that closes it (each
/// with its line end). Its token is random, so framed text cannot guess it and close it early.
pub fn frame() -> (String, String) {
    let token = uuid::Uuid::new_v4().simple().to_string();
    (format!("::stop-commands::{token}\n"), format!("::{token}::\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_escape_percent_and_line_breaks() {
        assert_eq!(escape_data("100% done\r\nnext"), "100%25 done%0D%0Anext");
    }

    #[test]
    fn properties_also_escape_colon_and_comma() {
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }

    #[test]
    fn a_command_escapes_and_neutralises_what_it_quotes() {
        let command = Command::new("warning", "held by pid 7 (x\r::error::pwn)\n\x1b[2J100%")
            .property("title", "a:b,c");
        assert_eq!(
            command.render(),
            "::warning title=a%3Ab%2Cc::held by pid 7 (x␍::error::pwn)%0A100%25"
        );
    }
}
