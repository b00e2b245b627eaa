//! `files:` shards: find the files, divide them into `split` parts balanced by recorded file
//! timings ([`super::predict::file_weights`], [`super::balance`]: the same deterministic
//! balancing as partitions), and put them into the commands.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::balance::balance;
use super::predict::file_weights;
use super::timings::Timings;

/// Expands `pattern` (relative to `dir`) into a sorted list of files, relative to `dir`.
pub fn find_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    // The folder is matched as written: a `[` or `*` in its name is not a pattern.
    let base = dir
        .to_str()
        .ok_or_else(|| format!("the plan's folder {} is not valid UTF-8", dir.display()))?;
    let full = Path::new(&glob::Pattern::escape(base)).join(pattern);
    let full = full.to_str().ok_or_else(|| format!("`{pattern}` is not valid UTF-8"))?;
    let paths = glob::glob(full).map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    let mut files = Vec::new();
    for entry in paths {
        let path =
            entry.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
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

/// The files as one shell word each, space-separated: what `{files}` becomes. A name that starts
/// with `-` is written `./-…`, or the test runner would take it for an option.
pub fn shell_words(files: &[PathBuf]) -> String {
    // A name from the file system holds no NUL, the one thing a quoter can refuse.
    let quoter = shlex::Quoter::new().allow_nul(true);
    let word = |file: &PathBuf| {
        let name = file.to_string_lossy();
        let name = if name.starts_with('-') { format!("./{name}").into() } else { name };
        quoter.quote(&name).map(Cow::into_owned).unwrap_or_default()
    };
    files.iter().map(word).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_folder_named_like_a_glob_is_matched_as_written() {
        let dir =
            std::env::temp_dir().join(format!("hs-split-{}", std::process::id())).join("t[1]*");
        std::fs::create_dir_all(dir.join("t")).unwrap();
        std::fs::write(dir.join("t/a.test.mjs"), "").unwrap();
        let found = find_files(&dir, "t/*.test.mjs");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        assert_eq!(found.unwrap(), vec![PathBuf::from("t/a.test.mjs")]);
    }

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
    fn the_shell_reads_each_file_back_as_one_word_however_it_is_named() {
        let names = [
            "tests/a b.mjs",
            "it's \"q\".mjs",
            "$HOME`id`$(id).mjs",
            "two\nlines\r.mjs",
            "-rf.mjs",
            "*?[x]{a,b}~#=%!^.mjs",
            "é\u{a0}.mjs",
            "t/x.mjs",
        ];
        let files: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {}", shell_words(&files)))
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = names
            .iter()
            .map(|n| if n.starts_with('-') { format!("./{n}") } else { (*n).to_owned() })
            .collect();
        assert_eq!(words, expected);
        assert!(shell_words(&files).ends_with(" t/x.mjs"), "a plain name stays plain");
    }
}
