//! The markdown summary's limits: what GitHub and mermaid would refuse is cut, and the cut is
//! said out loud.

mod support;

use harper_shard::report::summary;
use support::records::run_record;

#[test]
fn a_run_too_big_for_one_chart_keeps_its_failures_and_says_what_it_left_out() {
    let record = run_record(2000, 1);
    let chart = summary::gantt(&record);
    let diagram = chart.split("```").nth(1).expect("a fenced diagram");
    assert!(diagram.len() < 50_000, "mermaid draws at most 50,000 characters: {}", diagram.len());
    assert!(diagram.contains("section s2000\n"), "the failed shard is drawn");
    let drawn = diagram.matches("    section ").count();
    assert!(drawn > 100 && drawn < 2001, "{drawn}");
    assert!(chart.contains(&format!("The chart shows {drawn} of 2001 shards")), "{}", &chart[chart.len() - 200..]);
}

#[test]
fn a_run_that_fits_draws_every_shard_and_adds_no_note() {
    let chart = summary::gantt(&run_record(20, 2));
    assert_eq!(chart.matches("    section ").count(), 22);
    assert!(!chart.contains("The chart shows"));
}
