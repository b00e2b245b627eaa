//! Per-file timings from the JUnit XML that shard commands write.
//!
//! Every command sees `HARPER_SHARD_JUNIT_DIR` (the shard's `junit/` folder in the report
//! directory); a test runner pointed there — `node --test --test-reporter=junit
//! --test-reporter-destination=$HARPER_SHARD_JUNIT_DIR/unit.xml` — leaves `*.xml` files that name
//! each test's file. Summing testcase times per file gives what the next run's `split` balances
//! with. A testcase names its file with a `file` attribute, or inherits its enclosing
//! testsuite's (mocha's reporter puts it there). XML that names no file contributes nothing —
//! node 20's reporter writes no `file` — and such shards are balanced by shard time only.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use quick_xml::events::{BytesStart, Event};

/// Seconds per file, from every `*.xml` directly in `dir`; file names relative to `plan_dir`.
/// Unreadable or malformed files are skipped with the reason, for the caller to warn about.
pub fn file_times(dir: &Path, plan_dir: &Path) -> (BTreeMap<String, f64>, Vec<String>) {
    let mut times = BTreeMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (times, problems) };
    let mut paths: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "xml")).collect();
    paths.sort();
    for path in paths {
        let parsed = std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| parse(&text));
        match parsed {
            Ok(cases) => {
                for (file, secs) in cases {
                    if let Some(file) = relative(&file, plan_dir) {
                        *times.entry(file).or_insert(0.0) += secs;
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e} (per-file timings from it are ignored)", path.display())),
        }
    }
    (times, problems)
}

/// `(file, seconds)` for every testcase that names a file, directly or through a testsuite.
fn parse(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut suites: Vec<Option<String>> = Vec::new();
    let mut cases = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| format!("not valid XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"testsuite" => {
                let inherited = suites.last().cloned().flatten();
                suites.push(attr(&e, b"file")?.or(inherited));
            }
            Event::End(e) if e.local_name().as_ref() == b"testsuite" => {
                suites.pop();
            }
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"testcase" => {
                let file = attr(&e, b"file")?.or_else(|| suites.last().cloned().flatten());
                let secs = attr(&e, b"time")?.and_then(|t| t.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
                if let (Some(file), Some(secs)) = (file, secs) {
                    cases.push((file, secs));
                }
            }
            Event::Eof => return Ok(cases),
            _ => {}
        }
    }
}

fn attr(e: &BytesStart, name: &[u8]) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| Some(v.into_owned())).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// `file` as the plan names files: relative to the plan's directory, `/`-separated, without
/// `./`. Files outside the plan's directory cannot be matched, so they are dropped.
fn relative(file: &str, plan_dir: &Path) -> Option<String> {
    let file = file.strip_prefix("file://").unwrap_or(file);
    let path = Path::new(file);
    let rel = if path.is_absolute() {
        let base = std::fs::canonicalize(plan_dir).ok()?;
        let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        full.strip_prefix(&base).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let parts: Vec<String> = rel
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testcase_times_are_summed_per_file_and_suites_pass_their_file_down() {
        let xml = r#"<?xml version="1.0"?>
<testsuites>
  <testcase name="a" time="0.5" classname="test" file="./t/a.test.mjs"/>
  <testsuite name="outer" file="t/b.test.mjs">
    <testsuite name="inner">
      <testcase name="x" time="1.25"/>
    </testsuite>
    <testcase name="y" time="0.75"><failure message="no"/></testcase>
  </testsuite>
  <testcase name="a2" time="1.5" file="t/a.test.mjs"/>
  <testcase name="nameless" time="9"/>
</testsuites>"#;
        let cases = parse(xml).unwrap();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (f, s) in cases {
            *sums.entry(relative(&f, Path::new(".")).unwrap()).or_default() += s;
        }
        assert_eq!(sums.get("t/a.test.mjs"), Some(&2.0));
        assert_eq!(sums.get("t/b.test.mjs"), Some(&2.0));
        assert_eq!(sums.len(), 2, "a testcase that names no file counts for none: {sums:?}");
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(parse("<testsuites><testcase name=\"a\" time=\"1\" file=\"x\"></testsuite>").is_err());
    }
}
