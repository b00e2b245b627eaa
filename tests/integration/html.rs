//! `report.html` in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs; this test fails, never skips, without it) opens the page a real run wrote, from
//! disk, with every host name unresolvable, takes a screenshot and dumps the DOM it built, which
//! the test reads. What the page shows of a run (outcome, partition, instances, flaky shards,
//! its size limit) is tested in-process from synthetic runs, in `src/report/html.rs`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Sandbox, fake_plan};

/// Text that would run script or end the SVG if it were not escaped: an instance's name, a
/// command and its output carry it (shard names are plain by the plan's rules).
const HOSTILE: &str = "<img src=x onerror=alert(1)></svg><script>alert(\"x\")</script>&";
/// [`HOSTILE`] as the DOM's text.
const HOSTILE_TEXT: &str =
    "&lt;img src=x onerror=alert(1)&gt;&lt;/svg&gt;&lt;script&gt;alert(\"x\")&lt;/script&gt;&amp;";

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(found) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return found;
        }
    }
    panic!(
        "headless Chromium is missing: these tests render report.html in it. Install Debian's package: apt-get install -y chromium (.ci/run does)"
    );
}

/// What Chromium made of the page at `page`: the DOM it built, and a screenshot saved under
/// the target directory as `shot` (for a person to look at).
fn render(sandbox: &Sandbox, page: &Path, shot: &str) -> String {
    let run = |extra: &[String]| {
        let output = Command::new("timeout")
            .args(["--kill-after=5", "120"])
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            // No network: no name resolves, and any proxy request would go to a closed port.
            .args(["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"])
            .arg(format!("--user-data-dir={}", sandbox.path("chromium").display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .env(support::MARK, &sandbox.mark)
            .env("HOME", sandbox.path("home"))
            .output()
            .expect("run chromium");
        assert!(
            output.status.success(),
            "chromium failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(shot);
    let _ = std::fs::remove_file(&png);
    run(&["--window-size=1280,1400".into(), format!("--screenshot={}", png.display())]);
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    String::from_utf8(run(&["--dump-dom".into()])).expect("the DOM is UTF-8")
}

/// Each shard's group in the timeline: the label written beside it, and what is inside it.
fn shard_groups(dom: &str) -> Vec<(String, &str)> {
    dom.split("<g class=\"shard")
        .skip(1)
        .map(|rest| {
            let group = rest.split("</g>").next().unwrap_or_default();
            let label = group
                .split("text-anchor=\"end\">")
                .nth(1)
                .and_then(|r| r.split("<title>").next())
                .unwrap_or_default();
            (label.to_owned(), group)
        })
        .collect()
}

/// The page's own links (`href="…"`), outside the timeline.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"").skip(1).filter_map(|r| r.split('"').next()).map(str::to_owned).collect()
}

/// `%XX` decoded, as a browser resolves a relative link.
fn percent_decoded(href: &str) -> PathBuf {
    let bytes = href.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&href[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8(out).unwrap())
}

#[test]
fn a_failing_runs_page_shows_each_phase_the_cause_the_tail_and_a_hostile_name_as_text_in_a_browser()
{
    let sandbox = Sandbox::new();
    // It starts an instance named HOSTILE, prints HOSTILE and fails; its command line carries it too.
    sandbox.write(
        "hostile.sh",
        &format!("{} ctl start --new --name \"$1\" >/dev/null || exit 9\nprintf '%s\\n' 'tried' \"$1\"\nexit 3\n", support::harper_shard()),
    );
    let shards = format!(
        "  - name: ok-00\n    run: echo fine\n  - name: bad-00\n    run: \"sh hostile.sh '{}'\"\n",
        HOSTILE.replace('"', "\\\"")
    );
    sandbox.write("harper-shards.yml", &fake_plan("", "run: {concurrency: 2}\n", &shards));
    sandbox.run(&["run", "harper-shards.yml"]).expect(1);
    let page = sandbox.path("report/report.html");
    let source = support::read(&page);
    for element in ["<script", "<img", "<link", "<iframe", "<object", "url("] {
        assert!(
            !source.contains(element),
            "nothing loads or runs, but the page has {element}: {source}"
        );
    }
    assert!(
        source.contains("Content-Security-Policy\" content=\"default-src 'none';"),
        "a CSP forbids loading anything"
    );
    let dom = render(&sandbox, &page, "failing.png");

    assert!(
        dom.contains("<header class=\"outcome failed\">") && dom.contains("1 of 2 shard(s) failed"),
        "{dom}"
    );
    let groups = shard_groups(&dom);
    assert_eq!(
        groups.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["ok-00", "bad-00"],
        "a timeline row per shard"
    );
    for (name, group) in &groups {
        for phase in ["wait", "boot", "commands", "teardown"] {
            assert_eq!(
                group.matches(&format!("class=\"bar phase {phase}")).count(),
                1,
                "{name}: one {phase} bar: {group}"
            );
        }
        let failed = group
            .split("<rect class=\"")
            .skip(1)
            .filter(|r| r.split('"').next().is_some_and(|c| c.ends_with(" failed")))
            .count();
        assert_eq!(
            failed,
            usize::from(name == "bad-00"),
            "{name}: only the failed shard's commands are marked: {group}"
        );
    }
    assert!(groups[1].1.contains("class=\"bar phase commands failed\""), "{}", groups[1].1);

    let failures = dom
        .split("<section id=\"failures\">")
        .nth(1)
        .and_then(|r| r.split("</section>").next())
        .expect("a failures section");
    let cause =
        format!("<p class=\"cause\">`sh hostile.sh '{HOSTILE_TEXT}'` failed: exit code 3</p>");
    assert!(failures.contains(&cause), "{cause} in {failures}");
    let tail =
        failures.split("<pre>").nth(1).and_then(|r| r.split("</pre>").next()).expect("the tail");
    assert!(tail.contains(&format!("tried\n{HOSTILE_TEXT}\n")), "the tail, as text: {tail}");
    let links = hrefs(failures);
    assert!(
        links.iter().any(|h| h.starts_with("bad-00/") && h.ends_with(".log")),
        "links to its logs: {links:?}"
    );
    for href in links.iter().filter(|h| !h.starts_with('#')) {
        let target = sandbox.path("report").join(percent_decoded(href));
        assert!(target.exists(), "{href} points at {} inside the report folder", target.display());
    }

    assert!(
        !dom.contains("<img") && !dom.contains("<script"),
        "no element was made from the hostile text"
    );
    assert!(dom.contains("<title>✘ harper-shard:"), "no script changed the page's title");
    let timeline = dom
        .split("<section id=\"timeline\">")
        .nth(1)
        .and_then(|r| r.split("</section>").next())
        .expect("the timeline");
    let label = format!("i1 ({}", &HOSTILE_TEXT[..30]);
    assert!(
        timeline.contains(&label),
        "the instance's name is a label's text in the timeline: {label} in {timeline}"
    );
    assert!(timeline.contains("</svg>\n</figure>"), "the drawing ends where it should");
    assert_eq!(
        timeline.matches("<svg").count(),
        timeline.matches("</svg>").count(),
        "every drawing is closed by its own tag: {timeline}"
    );
}
