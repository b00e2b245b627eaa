//! The timeline of `report.html`, drawn here as inline SVG so that the page fetches nothing: a
//! row per shard with a bar per phase of each attempt that ran (a failed one marked, so a flaky
//! shard shows the attempt that failed before the one that passed), under it a thinner row per
//! instance of each attempt with the bars of its lives ([`summary::life_bars`], the same choice
//! the step summary's chart makes), on one time axis from the run's start.
//!
//! Each bar carries its figures in a `<title>` (a tooltip, no script) and its kind in its
//! classes (`bar phase boot failed`), which the page's CSS colours. A run too big for the
//! budget shows its failed shards, then its longest, and says how many it left out.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::{InstanceRecord, Phase, RunRecord, ShardRecord};
use super::short;
use super::summary::{self, LIVES_PER_SHARD, clip, escape as esc};
use crate::run::events::ShardStatus;

/// The drawing's coordinates (it scales to the page's width).
const WIDTH: f64 = 1200.0;
const LABEL_WIDTH: f64 = 270.0;
const RIGHT_PAD: f64 = 16.0;
const AXIS_HEIGHT: f64 = 26.0;
const SHARD_ROW: f64 = 26.0;
const INSTANCE_ROW: f64 = 18.0;
/// The most of a name written beside its row (the row's tooltip has the rest).
const LABEL_CHARS: usize = 36;

/// The timeline section within `max` bytes, or nothing when no shard ran a phase.
pub fn timeline(record: &RunRecord, max: usize) -> String {
    let end = record
        .shards
        .iter()
        .map(|s| &s.last().phases)
        .filter_map(|p| p.finished.or(p.teardown_started))
        .max()
        .unwrap_or_default();
    let span = record.duration.max(end).max(Duration::from_millis(1));
    let x = |t: Duration| {
        LABEL_WIDTH + t.as_secs_f64() / span.as_secs_f64() * (WIDTH - LABEL_WIDTH - RIGHT_PAD)
    };
    let rows: Vec<(usize, Row)> =
        record.shards.iter().enumerate().filter_map(|(i, s)| row(s, &x).map(|r| (i, r))).collect();
    if rows.is_empty() {
        return String::new();
    }
    const HEAD: &str = "<section id=\"timeline\">\n<h2>Timeline</h2>\n";
    const FOOT: &str = "</svg>\n</figure>\n";
    // The axis, the legend and the notes are small and bounded; the rows share what is left.
    let budget = max.saturating_sub(HEAD.len() + FOOT.len() + 4096);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let shard = |k: usize| &record.shards[rows[k].0];
    order.sort_by_key(|&k| (shard(k).ok(), std::cmp::Reverse(shard(k).last().phases.total())));
    let (mut chosen, mut size) = (Vec::new(), 0);
    for k in order {
        if size + rows[k].1.text.len() <= budget {
            size += rows[k].1.text.len();
            chosen.push(k);
        }
    }
    chosen.sort_unstable();
    let height = AXIS_HEIGHT + chosen.iter().map(|&k| rows[k].1.height).sum::<f64>() + 4.0;
    let mut html = HEAD.to_owned();
    let _ = writeln!(
        html,
        "<figure>\n<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" role=\"img\" aria-label=\"Shard phases and instance lives over the run's time\">"
    );
    axis(&mut html, span, height, &x);
    let mut y = AXIS_HEIGHT;
    for &k in &chosen {
        let _ = writeln!(html, "<g transform=\"translate(0,{y})\">\n{}</g>", rows[k].1.text);
        y += rows[k].1.height;
    }
    html.push_str(FOOT);
    html.push_str(&legend());
    if chosen.len() < rows.len() {
        let _ = writeln!(
            html,
            "<p class=\"left-out\">The timeline shows {} of {} shards (failed ones first, then the longest), to keep the page small; report.json has every one.</p>",
            chosen.len(),
            rows.len()
        );
    }
    let lives_left: usize = chosen.iter().map(|&k| rows[k].1.lives_left_out).sum();
    if lives_left > 0 {
        let _ = writeln!(
            html,
            "<p class=\"left-out\">The timeline leaves out {lives_left} instance li{}: it draws at most {LIVES_PER_SHARD} a shard, failed ones first; report.json has every one.</p>",
            if lives_left == 1 { "fe" } else { "ves" }
        );
    }
    html.push_str("</section>\n");
    html
}

/// One shard's rows: their SVG (at y = 0), their height, and the lives they left out.
struct Row {
    text: String,
    height: f64,
    lives_left_out: usize,
}

fn row(s: &ShardRecord, x: &impl Fn(Duration) -> f64) -> Option<Row> {
    let retried = s.attempts.len() > 1;
    // (attempt, phase, span, failed); the last attempt's failure is the shard's.
    let mut phases = Vec::new();
    for (k, a) in s.attempts.iter().enumerate() {
        let status = if k + 1 == s.attempts.len() { s.status } else { a.status };
        let failed = status.and_then(|st| a.failed_phase(st));
        phases.extend(
            Phase::ALL.iter().filter_map(|p| {
                a.phases.bounds(*p).map(|b| (a.attempt, *p, b, failed == Some(*p)))
            }),
        );
    }
    if phases.is_empty() {
        return None;
    }
    let name = esc_line(&s.name, NAME_CHARS);
    let of = |attempt: u32| {
        if retried { format!(" (attempt {attempt}/{})", s.last().of) } else { String::new() }
    };
    let status = s.status.map_or("unfinished", |st| st.label());
    let class = match s.status {
        Some(ShardStatus::Flaky) => "shard flaky",
        _ if s.ok() => "shard",
        _ => "shard failed",
    };
    let mut text = format!(
        "<g class=\"{class}\" data-shard=\"{}\">\n<a href=\"#shard-{}\"><text class=\"label\" x=\"{}\" y=\"17\" text-anchor=\"end\">{}<title>{name}: {status}</title></text></a>\n",
        s.index,
        s.index,
        LABEL_WIDTH - 8.0,
        esc_line(&s.name, LABEL_CHARS)
    );
    for (attempt, phase, span, failed) in phases {
        let tip = format!("{name}{}: {} {}", of(attempt), phase.label, short(span.1 - span.0));
        bar(&mut text, (&format!("phase {}", phase.label), failed), span, (4.0, 18.0), &tip, x);
    }
    text.push_str("</g>\n");
    let mut height = SHARD_ROW;
    let mut lives_left_out = 0;
    for a in &s.attempts {
        let shown: Vec<&InstanceRecord> = a.shown_instances().collect();
        let (bars, left_out) = summary::life_bars(&shown);
        lives_left_out += left_out;
        let mut drawn: Vec<usize> = bars.iter().map(|b| b.instance).collect();
        drawn.dedup();
        for n in drawn {
            let label = esc_line(&shown[n].label(), LABEL_CHARS);
            let attempt = if retried { format!("#{} ", a.attempt) } else { String::new() };
            let _ = writeln!(
                text,
                "<g class=\"instance\" transform=\"translate(0,{height})\">\n<text class=\"label sub\" x=\"{}\" y=\"12\" text-anchor=\"end\">{attempt}{label}</text>",
                LABEL_WIDTH - 8.0
            );
            for b in bars.iter().filter(|b| b.instance == n) {
                let kind = match b.step {
                    summary::LifeStep::End(_) => "end",
                    step => step.label(),
                };
                let tip = format!(
                    "{name}{} · {label}: {} {}",
                    of(a.attempt),
                    b.step.label(),
                    short(b.span.1 - b.span.0)
                );
                bar(&mut text, (&format!("life {kind}"), b.failed), b.span, (3.0, 11.0), &tip, x);
            }
            text.push_str("</g>\n");
            height += INSTANCE_ROW;
        }
    }
    Some(Row { text, height, lives_left_out })
}

/// The colour of each kind of bar (`phase boot`, `life up`, …; `failed` for any that failed),
/// given as SVG presentation attributes rather than CSS: a viewer whose own Content-Security-Policy
/// drops the page's inline style (Jenkins' default does) still shows the bars apart.
const FILLS: &[(&str, &str)] = &[
    ("phase wait", "#c8d1da"),
    ("phase boot", "#54aeff"),
    ("phase commands", "#4ac26b"),
    ("phase teardown", "#c297ff"),
    ("life boot", "#b6e3ff"),
    ("life up", "#aceebb"),
    ("life end", "#e0ccff"),
    ("life release", "#d1d9e0"),
];
const FAILED_FILL: &str = "#cf222e\" stroke=\"#82071e\" stroke-width=\"1.5";

/// The fill (and for a failed bar its outline) of a bar of `kind`.
fn fill(kind: &str, failed: bool) -> &'static str {
    if failed {
        return FAILED_FILL;
    }
    FILLS.iter().find(|(k, _)| *k == kind).map_or("#c8d1da", |(_, fill)| fill)
}

/// A bar from `span`'s start to its end (at least a pixel wide), `(top, height)` within its row.
fn bar(
    svg: &mut String,
    (kind, failed): (&str, bool),
    (from, to): (Duration, Duration),
    (top, height): (f64, f64),
    tip: &str,
    x: &impl Fn(Duration) -> f64,
) {
    let (left, right) = (x(from), x(to));
    let width = (right - left).max(1.0);
    let (marked, noted) = if failed { (" failed", " (failed)") } else { ("", "") };
    let _ = writeln!(
        svg,
        "<rect class=\"bar {kind}{marked}\" fill=\"{}\" x=\"{left:.1}\" y=\"{top}\" width=\"{width:.1}\" height=\"{height}\"><title>{tip}{noted} (from {} to {})</title></rect>",
        fill(kind, failed),
        short(from),
        short(to)
    );
}

/// The key to the colours, each swatch drawn as the bars are.
fn legend() -> String {
    let mut items: Vec<(&str, bool)> = FILLS.iter().map(|(kind, _)| (*kind, false)).collect();
    items.insert(4, ("failed", true));
    let mut html = "<p class=\"legend\">".to_owned();
    for (kind, failed) in items {
        let text = match kind.split_once(' ') {
            Some(("life", "end")) => "instance stop or kill".to_owned(),
            Some(("life", name)) => format!("instance {name}"),
            Some((_, name)) => name.to_owned(),
            None => kind.to_owned(),
        };
        let _ = write!(
            html,
            "<span class=\"key\"><svg width=\"12\" height=\"10\" aria-hidden=\"true\"><rect width=\"12\" height=\"10\" fill=\"{}\"/></svg> {text}</span> ",
            fill(kind, failed)
        );
    }
    html.push_str("</p>\n");
    html
}

/// Grid lines and labels at a round step, about eight of them across the run.
fn axis(svg: &mut String, span: Duration, height: f64, x: &impl Fn(Duration) -> f64) {
    const STEPS: [f64; 16] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ];
    let secs = span.as_secs_f64();
    let step = STEPS
        .iter()
        .copied()
        .find(|s| secs / s <= 8.0)
        .unwrap_or_else(|| (secs / 8.0 / 600.0).ceil() * 600.0);
    let _ = writeln!(svg, "<g class=\"axis\">");
    let mut k = 0u32;
    loop {
        let t = Duration::from_secs_f64(step * f64::from(k));
        if t > span {
            break;
        }
        let at = x(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{}\" x2=\"{at:.1}\" y2=\"{height}\"/><text x=\"{at:.1}\" y=\"14\" text-anchor=\"middle\">{}</text>",
            AXIS_HEIGHT - 6.0,
            short(t)
        );
        k += 1;
    }
    svg.push_str("</g>\n");
}

/// The most of a name or a command shown, here and in the page around the chart.
pub const NAME_CHARS: usize = 200;

/// [`esc`] of at most `max` characters of `text`, with an ellipsis when cut.
pub(super) fn esc_line(text: &str, max: usize) -> String {
    esc(&clip(text, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_draws_a_bar_per_phase_with_the_failed_one_marked() {
        let mut record = super::super::tests::distinct_phases().record();
        record.shards[0].status = Some(crate::run::events::ShardStatus::Failed);
        let html = timeline(&record, usize::MAX);
        for phase in Phase::ALL {
            let class = if phase.label == "commands" {
                "bar phase commands failed"
            } else {
                &format!("bar phase {}\"", phase.label)
            };
            assert_eq!(html.matches(class).count(), 1, "{class}: {html}");
        }
    }
}
