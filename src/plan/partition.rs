//! Which partition of the plan this job runs: `--partition K/N`, or else the CI system's own
//! parallelism variables (GitLab, CircleCI, Buildkite), and where the choice came from, so that
//! `--plan` can say it.
//!
//! Not for: deciding what a partition holds ([`super::assignment`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `K/N`: this job runs partition K (1-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub index: u32,
    pub total: u32,
}

impl Partition {
    /// A partition from a 1-based index, or a message that says what is wrong with it.
    pub fn new(index: u32, total: u32) -> Result<Partition, String> {
        if total == 0 {
            return Err(format!("{index}/{total}: N must be at least 1"));
        }
        if index == 0 || index > total {
            return Err(format!("{index}/{total}: K must be from 1 to N ({total})"));
        }
        Ok(Partition { index, total })
    }
}

impl FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| {
            format!("`{s}` is not a partition: write K/N with 1 <= K <= N, e.g. 2/3")
        })?;
        let number = |part: &str, what: &str| {
            part.trim().parse::<u32>().map_err(|_| format!("`{s}` is not a partition: {what} `{}` is not a whole number; write K/N, e.g. 2/3", part.trim()))
        };
        let (index, total) = (number(k, "K")?, number(n, "N")?);
        Partition::new(index, total).map_err(|why| format!("partition {why}"))
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

/// Where this job's partition came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Source {
    /// `--partition K/N` or `HARPER_SHARD_PARTITION`.
    Flag,
    /// A CI system's parallelism variables, as read.
    Ci {
        system: &'static str,
        index_var: &'static str,
        index: String,
        total_var: &'static str,
        total: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--partition"),
            Source::Ci { system, index_var, index, total_var, total } => {
                write!(f, "{system}: {index_var}={index}, {total_var}={total}")
            }
        }
    }
}

/// A CI system's variables for "this is job I of T".
struct CiVars {
    system: &'static str,
    index: &'static str,
    total: &'static str,
    /// Whether the index counts from 0.
    zero_based: bool,
}

/// In the order they are looked for; when two systems' variables are set, they must agree.
const CI_VARS: &[CiVars] = &[
    CiVars { system: "GitLab", index: "CI_NODE_INDEX", total: "CI_NODE_TOTAL", zero_based: false },
    CiVars {
        system: "CircleCI",
        index: "CIRCLE_NODE_INDEX",
        total: "CIRCLE_NODE_TOTAL",
        zero_based: true,
    },
    CiVars {
        system: "Buildkite",
        index: "BUILDKITE_PARALLEL_JOB",
        total: "BUILDKITE_PARALLEL_JOB_COUNT",
        zero_based: true,
    },
];

/// The partition the CI system's variables name, if any. `Err` is a usage error that names the
/// variable, its value and what to do: a job must not guess which part of the plan is its own.
pub fn from_ci(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Partition, Source)>, String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut found: Option<(Partition, Source)> = None;
    for ci in CI_VARS {
        let (index, total) = match (var(ci.index), var(ci.total)) {
            (None, None) => continue,
            // GitLab sets CI_NODE_TOTAL=1 in every job that is not `parallel:`.
            (None, Some(total)) if total.trim() == "1" => continue,
            (None, Some(total)) => {
                return Err(format!(
                    "{} is `{total}` but {} is not set; set both (or neither), or give --partition K/N",
                    ci.total, ci.index
                ));
            }
            (Some(index), None) => {
                return Err(format!(
                    "{} is `{index}` but {} is not set; set both (or neither), or give --partition K/N",
                    ci.index, ci.total
                ));
            }
            (Some(index), Some(total)) => (index, total),
        };
        let number = |name: &str, value: &str| {
            value.trim().parse::<u32>().map_err(|_| {
                format!("{name} is `{value}`, not a whole number; {} parallelism sets it, or give --partition K/N", ci.system)
            })
        };
        let (i, n) = (number(ci.index, &index)?, number(ci.total, &total)?);
        let base = if ci.zero_based { "0-based: from 0" } else { "1-based: from 1" };
        let k = if ci.zero_based { i.checked_add(1) } else { Some(i) };
        let partition = k.ok_or_else(String::new).and_then(|k| Partition::new(k, n)).map_err(|_| {
            format!(
                "{}={index} is out of range for {}={total} ({} is {base} to {}); give --partition K/N to override",
                ci.index,
                ci.total,
                ci.index,
                if ci.zero_based { n.saturating_sub(1) } else { n }
            )
        })?;
        let source = Source::Ci {
            system: ci.system,
            index_var: ci.index,
            index,
            total_var: ci.total,
            total,
        };
        match &found {
            Some((p, first)) if *p != partition => {
                return Err(format!(
                    "the CI variables disagree: {first} means partition {p}, {source} means {partition}; give --partition K/N"
                ));
            }
            Some(_) => {}
            None => found = Some((partition, source)),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(vars: &[(&str, &str)]) -> Result<Option<Partition>, String> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        from_ci(&env).map(|found| found.map(|(p, _)| p))
    }

    #[test]
    fn partition_parses_k_of_n_and_refuses_nonsense() {
        assert_eq!("2/3".parse::<Partition>(), Ok(Partition { index: 2, total: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "", "-1/3"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad} accepted");
        }
        assert_eq!(
            "4/3".parse::<Partition>().unwrap_err(),
            "partition 4/3: K must be from 1 to N (3)"
        );
        assert!("x/3".parse::<Partition>().unwrap_err().contains("K `x` is not a whole number"));
    }

    #[test]
    fn each_ci_system_counts_from_its_own_base() {
        assert_eq!(
            ci(&[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "3")]),
            Ok(Some(Partition { index: 1, total: 3 }))
        );
        assert_eq!(
            ci(&[("CIRCLE_NODE_INDEX", "0"), ("CIRCLE_NODE_TOTAL", "3")]),
            Ok(Some(Partition { index: 1, total: 3 }))
        );
        assert_eq!(
            ci(&[("BUILDKITE_PARALLEL_JOB", "2"), ("BUILDKITE_PARALLEL_JOB_COUNT", "3")]),
            Ok(Some(Partition { index: 3, total: 3 }))
        );
    }

    #[test]
    fn no_variables_or_gitlabs_lone_total_of_one_mean_no_partition() {
        assert_eq!(ci(&[]), Ok(None));
        assert_eq!(ci(&[("CI_NODE_TOTAL", "1")]), Ok(None));
    }

    #[test]
    fn a_ci_variable_that_is_not_a_number_or_out_of_range_is_refused_with_its_value() {
        let err = ci(&[("CI_NODE_INDEX", "two"), ("CI_NODE_TOTAL", "3")]).unwrap_err();
        assert!(err.contains("CI_NODE_INDEX is `two`, not a whole number"), "{err}");
        let err = ci(&[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "3")]).unwrap_err();
        assert!(err.contains("CI_NODE_INDEX=0 is out of range for CI_NODE_TOTAL=3 (CI_NODE_INDEX is 1-based: from 1 to 3)"), "{err}");
        let err = ci(&[("CIRCLE_NODE_INDEX", "3"), ("CIRCLE_NODE_TOTAL", "3")]).unwrap_err();
        assert!(err.contains("0-based: from 0 to 2"), "{err}");
        let err = ci(&[("BUILDKITE_PARALLEL_JOB_COUNT", "4")]).unwrap_err();
        assert!(err.contains("BUILDKITE_PARALLEL_JOB is not set"), "{err}");
    }

    #[test]
    fn two_ci_systems_that_disagree_are_refused() {
        let vars = [
            ("CI_NODE_INDEX", "1"),
            ("CI_NODE_TOTAL", "2"),
            ("CIRCLE_NODE_INDEX", "1"),
            ("CIRCLE_NODE_TOTAL", "2"),
        ];
        assert!(ci(&vars).unwrap_err().contains("the CI variables disagree"));
        let agree = [
            ("CI_NODE_INDEX", "2"),
            ("CI_NODE_TOTAL", "2"),
            ("CIRCLE_NODE_INDEX", "1"),
            ("CIRCLE_NODE_TOTAL", "2"),
        ];
        assert_eq!(ci(&agree), Ok(Some(Partition { index: 2, total: 2 })));
    }
}
