//! `files:` shards: find the files, divide them into `split` parts balanced by recorded file
//! timings ([`super::predict::file_weights`], [`super::balance`]: the same deterministic
//! balancing as partitions), and put them into the commands.

use std::path::{Path, PathBuf};

use super::balance::balance;
use super::predict::file_weights;
use super::timings::Timings;

/// Expands `pattern` (relative to `dir`) into a sorted list of files, relative to `dir`.
pub fn find_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = dir.join(pattern);
    let full = full.to_str().ok_or_else(|| format!("`{pattern}` is not valid UTF-8"))?;
    let paths = glob::glob(full).map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
        if path.is_file() {
            files.push(path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(path));
        }
    }
    files.sort();
    Ok(files)
}

/// Divides `files` into at most `parts` non-empty groups, balanced by the recorded time of each
/// file; a file without a record weighs the mean of those with one (1 s when none has).
pub fn divide(files: &[PathBuf], parts: usize, timings: &Timings) -> Vec<Vec<PathBuf>> {
    let (weights, _) = file_weights(files, timings);
    balance(&weights, parts.min(files.len()).max(1))
        .into_iter()
        .filter(|bin| !bin.is_empty())
        .map(|bin| bin.into_iter().map(|i| files[i].clone()).collect())
        .collect()
}

/// The files as one shell word each, space-separated: what `{files}` becomes.
pub fn shell_words(files: &[PathBuf]) -> String {
    files.iter().map(|f| shell_quote(&f.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./-+@%:=,".contains(&b));
    if plain { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divide_balances_by_recorded_file_times() {
        let files: Vec<PathBuf> = ["a", "b", "c", "d"].iter().map(PathBuf::from).collect();
        let mut t = Timings::default();
        t.files.insert("a".into(), 30.0);
        t.files.insert("b".into(), 10.0);
        t.files.insert("c".into(), 10.0);
        t.files.insert("d".into(), 10.0);
        let parts = divide(&files, 2, &t);
        assert_eq!(parts, vec![vec![PathBuf::from("a")], vec!["b".into(), "c".into(), "d".into()]]);
    }

    #[test]
    fn divide_never_makes_empty_parts() {
        let files = vec![PathBuf::from("only")];
        assert_eq!(divide(&files, 3, &Timings::default()).len(), 1);
    }

    #[test]
    fn shell_words_quote_what_the_shell_would_split() {
        let files = vec![PathBuf::from("tests/a b.mjs"), PathBuf::from("tests/it's.mjs"), PathBuf::from("t/x.mjs")];
        assert_eq!(shell_words(&files), r"'tests/a b.mjs' 'tests/it'\''s.mjs' t/x.mjs");
    }
}
