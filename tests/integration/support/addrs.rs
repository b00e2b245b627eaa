//! Which loopback addresses each test takes, read from the tests' own sources, and the check that
//! no two tests take one: every test of this binary runs in one process at the same time as the
//! others, and two tests with their own pool folders on one address would take each other's
//! ports. An address is a `127.0.X.Y` literal; `start: A, count: N` and `Scene::new("A", N)` take
//! N addresses from A. A literal belongs to the top-level function it is written in. 127.0.0.0/24
//! is left out: test servers listen on 127.0.0.1 on ports the kernel picks, and the tests that
//! name no pool share the machine's pool there (127.0.0.2 on), whose locks keep them apart.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Every address each top-level function of `source` takes, in order of appearance.
pub fn taken(source: &str) -> Vec<(String, Ipv4Addr)> {
    let mut owner = String::from("(file)");
    let mut out = Vec::new();
    for line in source.lines() {
        let head = line.strip_prefix("pub ").unwrap_or(line);
        if let Some(rest) = head.strip_prefix("fn ") {
            owner = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_owned();
        }
        let mut at = 0;
        while let Some(found) = line[at..].find("127.0.") {
            let start = at + found;
            let digits: String =
                line[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            at = start + digits.len().max(1);
            let Ok(addr) = digits.trim_end_matches('.').parse::<Ipv4Addr>() else { continue };
            if addr.octets()[2] == 0 {
                continue;
            }
            let after = &line[at..];
            let count = count_after(after).unwrap_or(1);
            for n in 0..count {
                out.push((owner.clone(), Ipv4Addr::from(u32::from(addr) + n)));
            }
        }
    }
    out
}

/// `N` from `, count: N` or `", N)` right after an address.
fn count_after(after: &str) -> Option<u32> {
    let rest = after.strip_prefix(", count: ").or_else(|| after.strip_prefix("\", "))?;
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    n.parse().ok()
}

/// Each address taken by more than one function of the given files: `(address, [file::fn …])`.
pub fn shared(files: &[(String, String)]) -> Vec<(Ipv4Addr, Vec<String>)> {
    let mut owners: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for (file, source) in files {
        for (owner, addr) in taken(source) {
            let who = format!("{file}::{owner}");
            let list = owners.entry(addr).or_default();
            if !list.contains(&who) {
                list.push(who);
            }
        }
    }
    owners.into_iter().filter(|(_, who)| who.len() > 1).collect()
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read the tests' folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "addrs.rs")
        {
            let name = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(&path)
                .display()
                .to_string();
            out.push((name, std::fs::read_to_string(&path).expect("read a test source")));
        }
    }
}

#[test]
fn no_two_tests_take_one_loopback_address() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration"), &mut files);
    assert!(files.len() > 10, "found only {} test sources", files.len());
    let shared = shared(&files);
    assert!(shared.is_empty(), "addresses taken by more than one test:\n{shared:#?}");
}

#[test]
fn the_address_reader_sees_literals_ranges_and_owners() {
    let source = "fn a() {\n  x(\"127.0.9.2\");\n  y(\"pool: {start: 127.0.9.10, count: 3}\");\n}\npub fn b() {\n  Scene::new(\"127.0.9.11\", 2);\n  z(\"127.0.0.1:0 127.0.0.2\");\n}\n";
    let got: Vec<(String, String)> =
        taken(source).into_iter().map(|(o, a)| (o, a.to_string())).collect();
    let want = [
        ("a", "127.0.9.2"),
        ("a", "127.0.9.10"),
        ("a", "127.0.9.11"),
        ("a", "127.0.9.12"),
        ("b", "127.0.9.11"),
        ("b", "127.0.9.12"),
    ];
    assert_eq!(got, want.map(|(o, a)| (o.to_owned(), a.to_owned())));
    let files = [("t.rs".to_owned(), source.to_owned())];
    let both: Vec<Ipv4Addr> = shared(&files).into_iter().map(|(a, _)| a).collect();
    assert_eq!(both, ["127.0.9.11".parse::<Ipv4Addr>().unwrap(), "127.0.9.12".parse().unwrap()]);
}
