//! The modules of `report/` and `run/` form a line, not a circle: read from their sources, no
//! module reaches another that reaches back to it. A test only; it reads the files this crate
//! was built from.
//!
//! A module's edges are the siblings its code (not its tests, not its comments) names through
//! `super::…` or `crate::<folder>::…`, and the parent (`mod.rs`) when it uses one of the
//! parent's own items; the parent's edges are the children its code names as `child::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The code of a file without its `#[cfg(test)] mod tests` and without comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers that follow each `prefix` in `code`: `super::x` gives `x`, and
/// `super::{a, b::c}` gives `a` and `b`.
fn after(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].ends_with(|c: char| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            names.extend(list.split(',').map(|item| {
                item.trim().split(|c: char| !is_ident(c)).next().unwrap_or_default().to_owned()
            }));
        } else {
            names.push(rest.split(|c: char| !is_ident(c)).next().unwrap_or_default().to_owned());
        }
    }
    names.retain(|n| !n.is_empty() && n != "self" && n != "super");
    names
}

/// The graph of the modules of one folder, from `(module, source)` pairs (`mod` is the parent).
fn graph(folder: &str, sources: &[(String, String)]) -> Graph {
    let children: BTreeSet<&str> =
        sources.iter().map(|(m, _)| m.as_str()).filter(|m| *m != "mod").collect();
    let mut graph = Graph::new();
    for (module, text) in sources {
        let code = code(text);
        let mut edges = BTreeSet::new();
        if module == "mod" {
            for child in &children {
                let named = code
                    .match_indices(&format!("{child}::"))
                    .any(|(at, _)| !code[..at].ends_with(|c: char| is_ident(c) || c == ':'));
                if named {
                    edges.insert(child.to_string());
                }
            }
        } else {
            for name in after(&code, "super::")
                .into_iter()
                .chain(after(&code, &format!("crate::{folder}::")))
            {
                match children.contains(name.as_str()) {
                    true if name != *module => edges.insert(name),
                    true => false,
                    false => edges.insert("mod".to_owned()),
                };
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Every circle in `graph`, each as the path that closes it.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(graph: &Graph, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
        let last = path.last().cloned().unwrap_or_default();
        for next in graph.get(&last).into_iter().flatten() {
            if let Some(start) = path.iter().position(|m| m == next) {
                if start == 0 {
                    found.push([&path[..], std::slice::from_ref(next)].concat());
                }
            } else {
                path.push(next.clone());
                walk(graph, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for module in graph.keys() {
        walk(graph, &mut vec![module.clone()], &mut found);
    }
    found
}

fn sources(folder: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(folder);
    let mut sources = Vec::new();
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
    {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let module = path.file_stem().expect("a file name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            sources.push((module, text));
        }
    }
    sources
}

#[test]
fn no_modules_of_report_or_run_import_each_other_in_a_circle() {
    for folder in ["report", "run"] {
        let found = circles(&graph(folder, &sources(folder)));
        let said: Vec<String> = found.iter().map(|c| c.join(" → ")).collect();
        assert!(said.is_empty(), "src/{folder}/ has modules in a circle:\n{}", said.join("\n"));
    }
}

#[test]
fn a_circle_through_a_sibling_or_the_parent_is_found() {
    let source = |m: &str, t: &str| (m.to_owned(), t.to_owned());
    let sibling =
        [source("a", "use super::b::X;"), source("b", "use super::{a, c};\n"), source("c", "")];
    assert_eq!(circles(&graph("f", &sibling)), [["a", "b", "a"], ["b", "a", "b"]]);
    let parent = [
        source("mod", "pub mod a;\npub fn f() { a::g() }"),
        source("a", "use super::{Reporter, short};"),
    ];
    assert_eq!(circles(&graph("f", &parent)).len(), 2);
    let line = [
        source("a", "use crate::f::c::X; // super::b::Y"),
        source("b", "use super::a;"),
        source("c", "#[cfg(test)]\nmod tests {\n    use super::a;\n}"),
    ];
    assert!(circles(&graph("f", &line)).is_empty(), "comments and tests are not edges");
}
