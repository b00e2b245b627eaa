//! The test cases in the JUnit XML that shard commands write, read back: for per-file
//! timings, for the files a retry runs again, and for `junit.xml`'s per-test cases.
//!
//! Every command sees `HARPER_SHARD_JUNIT_DIR` (its attempt's `junit/` folder in the report
//! directory); a test runner pointed there — `node --test --test-reporter=junit
//! --test-reporter-destination=$HARPER_SHARD_JUNIT_DIR/unit.xml` — leaves `*.xml` files that name
//! each test's file. A testcase names its file with a `file` attribute, or inherits its
//! enclosing testsuite's (mocha's reporter puts it there). XML that names no file gives cases
//! without one — node 20's reporter writes no `file` — and such shards are balanced by shard
//! time only and retried whole.
//!
//! Not here: what the reports make of the cases (`report`), when a shard is retried (`run`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use quick_xml::events::{BytesStart, Event};

/// One testcase, as the XML says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub classname: Option<String>,
    /// The test file, as written (made relative to the plan with [`relative`]).
    pub file: Option<String>,
    /// Seconds, when given and sane.
    pub time: Option<f64>,
    /// Its `<failure>` or `<error>`, if it did not pass.
    pub failure: Option<ReportedFailure>,
    pub skipped: bool,
}

/// What a failed testcase says about its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedFailure {
    /// `<error>` rather than `<failure>`.
    pub error: bool,
    pub message: Option<String>,
    pub kind: Option<String>,
    pub text: String,
}

/// The largest failure text kept per case: the reports quote it, the logs have the rest.
const TEXT_BYTES: usize = 16 * 1024;

/// The cases of every `*.xml` directly in `dir`, in file order; unreadable or malformed files
/// are skipped with the reason, for the caller to warn about.
pub fn read(dir: &Path) -> (Vec<Case>, Vec<String>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (cases, problems) };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    for path in paths {
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse(&text))
        {
            Ok(found) => cases.extend(found),
            Err(e) => {
                problems.push(format!("{}: {e} (its test cases are ignored)", path.display()))
            }
        }
    }
    (cases, problems)
}

/// Seconds per file, from every `*.xml` directly in `dir`; file names relative to `plan_dir`.
pub fn file_times(dir: &Path, plan_dir: &Path) -> (BTreeMap<String, f64>, Vec<String>) {
    let (cases, problems) = read(dir);
    let mut times = BTreeMap::new();
    for case in cases {
        if let (Some(file), Some(secs)) =
            (case.file.as_deref().and_then(|f| relative(f, plan_dir)), case.time)
        {
            *times.entry(file).or_insert(0.0) += secs;
        }
    }
    (times, problems)
}

/// Every testcase, each with the file it names directly or through a testsuite.
fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut suites: Vec<Option<String>> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    // The case whose children are being read, and the failure whose text is.
    let mut open: Option<Case> = None;
    let mut in_failure = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"testsuite" => {
                let inherited = suites.last().cloned().flatten();
                suites.push(attr(&e, b"file")?.or(inherited));
            }
            Event::End(e) if e.local_name().as_ref() == b"testsuite" => {
                suites.pop();
            }
            Event::Start(e) if e.local_name().as_ref() == b"testcase" => {
                open = Some(case(&e, &suites)?)
            }
            Event::Empty(e) if e.local_name().as_ref() == b"testcase" => {
                cases.push(case(&e, &suites)?)
            }
            Event::End(e) if e.local_name().as_ref() == b"testcase" => cases.extend(open.take()),
            Event::Start(ref e) | Event::Empty(ref e) if open.is_some() => {
                let name = e.local_name();
                let case = open.as_mut().expect("a case is open");
                match name.as_ref() {
                    b"failure" | b"error" if case.failure.is_none() => {
                        case.failure = Some(ReportedFailure {
                            error: name.as_ref() == b"error",
                            message: attr(e, b"message")?,
                            kind: attr(e, b"type")?,
                            text: String::new(),
                        });
                        in_failure = matches!(event, Event::Start(_));
                    }
                    b"skipped" => case.skipped = true,
                    _ => {}
                }
            }
            Event::End(e)
                if in_failure && matches!(e.local_name().as_ref(), b"failure" | b"error") =>
            {
                in_failure = false
            }
            Event::Text(t) if in_failure => {
                keep_text(&mut open, &t.decode().map_err(|e| e.to_string())?)
            }
            Event::CData(t) if in_failure => keep_text(&mut open, &String::from_utf8_lossy(&t)),
            Event::Eof => return Ok(cases),
            _ => {}
        }
    }
}

fn case(e: &BytesStart, suites: &[Option<String>]) -> Result<Case, String> {
    Ok(Case {
        name: attr(e, b"name")?.unwrap_or_default(),
        classname: attr(e, b"classname")?,
        file: attr(e, b"file")?.or_else(|| suites.last().cloned().flatten()),
        time: attr(e, b"time")?
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0),
        failure: None,
        skipped: false,
    })
}

fn keep_text(open: &mut Option<Case>, text: &str) {
    if let Some(failure) = open.as_mut().and_then(|c| c.failure.as_mut()) {
        let room = TEXT_BYTES.saturating_sub(failure.text.len());
        let mut end = room.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        failure.text.push_str(&text[..end]);
    }
}

fn attr(e: &BytesStart, name: &[u8]) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// `file` as the plan names files: relative to the plan's directory, `/`-separated, without
/// `./`. Files outside the plan's directory cannot be matched, so they are dropped.
pub fn relative(file: &str, plan_dir: &Path) -> Option<String> {
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
        for case in &cases {
            if let (Some(f), Some(s)) = (&case.file, case.time) {
                *sums.entry(relative(f, Path::new(".")).unwrap()).or_default() += s;
            }
        }
        let failed: Vec<&str> =
            cases.iter().filter(|c| c.failure.is_some()).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["y"]);
        assert_eq!(cases[2].failure.as_ref().and_then(|f| f.message.as_deref()), Some("no"));
        assert_eq!(sums.get("t/a.test.mjs"), Some(&2.0));
        assert_eq!(sums.get("t/b.test.mjs"), Some(&2.0));
        assert_eq!(sums.len(), 2, "a testcase that names no file counts for none: {sums:?}");
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(
            parse("<testsuites><testcase name=\"a\" time=\"1\" file=\"x\"></testsuite>").is_err()
        );
    }
}
