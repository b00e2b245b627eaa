#!/usr/bin/env python3
"""The README and docs/*.md name only what exists: every repository path in backticks or links,
every Rust path (`a::b::c`) resolved through src/, every test named after its file
(`tests/x.rs` `name`), and every item in parentheses after a source file. Prints what does not
resolve, with file and line, and exits 1 if anything does not."""
import glob
import os
import re
import subprocess
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Paths the docs name in other repositories, or that exist only in a release.
ELSEWHERE = {"src/compile_cache.cc", "src/loopbackAddressPool.ts", "action/release-manifest.txt"}
ROOTS = ("src/", "tests/", "bench/", "benches/", "clients/", "docs/", "examples/", "action/", ".ci/", ".github/")
FOREIGN_CRATES = {"std", "tokio", "nix", "libc", "serde", "anyhow", "procfs", "sysinfo", "clap"}

files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, text=True, check=True).stdout.split()
known = set(files)
for f in files:
    while "/" in f:
        f = f.rsplit("/", 1)[0]
        known.add(f)


def module_text(chain):
    """The source of module src/<chain>: its file, its folder's mod.rs, or an inline `mod`."""
    path = "src/" + "/".join(chain)
    for f in (path + ".rs", path + "/mod.rs"):
        if os.path.exists(f):
            return open(f).read()
    parent = module_text(chain[:-1]) if len(chain) > 1 else None
    m = parent and re.search(r"\bmod " + chain[-1] + r"\s*\{", parent)
    return parent[m.end():] if m else None


modules = []
for f in glob.glob("src/**/*.rs", recursive=True):
    chain = f[4:-3].split("/")
    chain = chain[:-1] if chain[-1] == "mod" else chain
    if chain not in (["lib"], ["main"]):
        modules.append(chain)
        modules += [chain + [m] for m in re.findall(r"\bmod (\w+)\s*\{", open(f).read())]


def defines(text, name):
    return re.search(r"\b(fn|const|static|struct|enum|type|trait|mod)\s+" + name + r"\b", text) or \
        re.search(r"\buse\b[^;]*\b" + name + r"\b[^;]*;", text)


def rust_path_resolves(segs):
    for chain in modules:
        if chain[-len(segs):] == segs:
            return True
        head = segs[:-1]
        if chain[-len(head):] == head:
            text = module_text(chain)
            if text is not None and defines(text, segs[-1]):
                return True
    return False


bad = []
for doc in ["README.md"] + sorted(glob.glob("docs/*.md")):
    text = open(doc).read()
    for n, line in enumerate(text.splitlines(), 1):
        for tok in re.findall(r"`([^`\s]+)`", line) + re.findall(r"\]\(([^)#\s]+)", line):
            if tok.startswith(("http:", "https:")):
                continue
            if tok.startswith(ROOTS) or tok.startswith("../") or (tok.endswith(".md") and "/" in tok):
                path = os.path.normpath(os.path.join(os.path.dirname(doc), tok)) \
                    if not tok.startswith(ROOTS) else tok.rstrip("/")
                if not re.search(r"[{*<]", path) and path not in known and path not in ELSEWHERE:
                    bad.append(f"{doc}:{n}: no such path: {tok}")
                continue
            m = re.fullmatch(r"([a-z_]+(?:::[A-Za-z_]\w*)+)(?:\(\))?", tok)
            if m and m.group(1).split("::")[0] not in FOREIGN_CRATES and not rust_path_resolves(m.group(1).split("::")):
                bad.append(f"{doc}:{n}: no such Rust path in src/: {tok}")
    # A file named with the items it holds: "`f.rs` `a`, `b`" and "`f.rs` (`a`, `mod b`)".
    for files, names, says in (
        (r"`((?:tests|src)/[\w/]+\.rs)`((?:[ ,(]|and)*(?:`[a-z0-9_]+`(?:[ ,)]|and)*)+)", r"`([a-z0-9_]+)`", "has no"),
        (r"`((?:src|tests)/[\w/]+\.rs)` \(([^)]*)\)", r"`(?:mod )?([A-Za-z_]\w*)`", "defines no"),
    ):
        for m in re.finditer(files, text):
            if os.path.exists(m.group(1)):
                body = open(m.group(1)).read()
                n = text[:m.start()].count("\n") + 1
                for name in re.findall(names, m.group(2)):
                    if not defines(body, name):
                        bad.append(f"{doc}:{n}: {m.group(1)} {says} `{name}`")
print("\n".join(bad))
sys.exit(1 if bad else 0)
