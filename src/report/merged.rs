//! The tests a shard's commands reported in their JUnit XML ([`crate::cases`]), merged across
//! the shard's attempts: one entry per test, with each attempt it ran in. A test that failed in
//! one attempt and passed in a later one is flaky; the reporters (junit.xml, the GitHub
//! annotations, the step summary) read it from here.

use std::net::Ipv4Addr;

use super::model::ShardRecord;
use crate::cases::{self, Case};

/// One test, and every attempt that ran it, in order.
#[derive(Debug, Clone)]
pub struct Test {
    pub runs: Vec<Run>,
}

/// One run of a test: in which attempt, on which address, and how it went.
#[derive(Debug, Clone)]
pub struct Run {
    pub attempt: u32,
    pub address: Option<Ipv4Addr>,
    pub case: Case,
}

impl Test {
    /// The run that counts: the last.
    pub fn last(&self) -> &Case {
        &self.runs.last().expect("a test has run at least once").case
    }

    /// Failed, then passed.
    pub fn flaky(&self) -> bool {
        self.last().failure.is_none() && self.runs.iter().any(|r| r.case.failure.is_some())
    }

    /// `t/b.test.mjs: b works`, or the name alone when no file is named.
    pub fn label(&self) -> String {
        let case = self.last();
        match &case.file {
            Some(file) => format!("{}: {}", file.rsplit('/').next().unwrap_or(file), case.name),
            None => case.name.clone(),
        }
    }
}

/// The shard's tests, in the order they first ran.
pub fn of(shard: &ShardRecord) -> Vec<Test> {
    let mut tests: Vec<Test> = Vec::new();
    for attempt in &shard.attempts {
        let Some(dir) = &attempt.junit_dir else { continue };
        let (found, _) = cases::read(dir);
        for case in found {
            let key = |c: &Case| (c.classname.clone(), c.name.clone(), c.file.clone());
            let run = Run { attempt: attempt.attempt, address: attempt.address(), case };
            match tests.iter_mut().find(|t| key(&t.runs[0].case) == key(&run.case)) {
                Some(test) => test.runs.push(run),
                None => tests.push(Test { runs: vec![run] }),
            }
        }
    }
    tests
}

/// The labels of the tests that flaked in `shard`.
pub fn flaked(shard: &ShardRecord) -> Vec<String> {
    of(shard).iter().filter(|t| t.flaky()).map(Test::label).collect()
}
