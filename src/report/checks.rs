//! A check run through the GitHub Checks API (`--github-checks` with `GITHUB_TOKEN`): one run
//! on the commit under test, its output built from the same pieces as the step summary, and an
//! annotation per shard (a failure with its cause and tail, or a notice with its timings).
//!
//! The commit: for `pull_request` / `pull_request_target` events the pull request's head
//! (`.pull_request.head.sha` in `$GITHUB_EVENT_PATH`) — `$GITHUB_SHA` is then a merge commit
//! nobody looks at — otherwise `$GITHUB_SHA`. The API takes at most 50 annotations a request,
//! so the run is created with the first 50 and updated with the rest, 50 at a time.
//!
//! Reporting never decides the exit status: a 403 (a fork's pull request, a read-only token)
//! or any other failure becomes one warning.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::model::{RunRecord, ShardRecord};
use super::place::Place;
use super::say::Say;
use super::{collapse, phase_line, short, summary};

/// The Checks API's limit of annotations per request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// The Checks API's limit on `output.summary` and `output.text`, in characters.
const OUTPUT_LIMIT: usize = 65_535;
/// An annotation's `raw_details` limit (64 KiB).
const DETAILS_LIMIT: usize = 64 * 1024;
/// How long all requests together may take before the tool gives up on the check run.
const BUDGET: Duration = Duration::from_secs(60);

/// Where the check run goes and what it is called.
#[derive(Debug, Clone)]
pub struct CheckRunTarget {
    pub api_url: String,
    pub token: String,
    pub owner: String,
    pub repo: String,
    pub sha: String,
    pub name: String,
    /// Where annotations point: each shard's line in the plan.
    pub place: Place,
    /// The workflow run's page, if the environment names it.
    pub details_url: Option<String>,
}

impl CheckRunTarget {
    /// Reads the target from GitHub's variables (`env`); the error says what is missing.
    /// Annotations point at `place`.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        token: Option<String>,
        name: &str,
        place: Place,
    ) -> anyhow::Result<CheckRunTarget> {
        let token = token.filter(|t| !t.is_empty()).context(
            "--github-checks needs a token in GITHUB_TOKEN (with `checks: write`); no check run was published",
        )?;
        let repository = env("GITHUB_REPOSITORY")
            .context("GITHUB_REPOSITORY is not set (owner/name); no check run was published")?;
        let (owner, repo) = repository.split_once('/').with_context(|| {
            format!(
                "GITHUB_REPOSITORY is `{repository}`, not owner/name; no check run was published"
            )
        })?;
        let sha = head_sha(env)?;
        let api_url = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let details_url = match (env("GITHUB_SERVER_URL"), env("GITHUB_RUN_ID")) {
            (Some(server), Some(run)) => Some(format!("{server}/{repository}/actions/runs/{run}")),
            _ => None,
        };
        Ok(CheckRunTarget {
            api_url,
            token,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            sha,
            name: name.to_owned(),
            place,
            details_url,
        })
    }
}

/// The commit the check belongs to (see the module doc).
fn head_sha(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let event = env("GITHUB_EVENT_NAME").unwrap_or_default();
    if event == "pull_request" || event == "pull_request_target" {
        let path = env("GITHUB_EVENT_PATH").context(
            "a pull_request event without GITHUB_EVENT_PATH; no check run was published",
        )?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the event payload {path}"))?;
        let payload: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the event payload {path} is not JSON"))?;
        return payload["pull_request"]["head"]["sha"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the event payload {path} has no .pull_request.head.sha"));
    }
    env("GITHUB_SHA").context("GITHUB_SHA is not set; no check run was published")
}

/// One annotation, in the API's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: &'static str,
    pub title: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_details: Option<String>,
}

/// One annotation per shard, on its line of the plan: failures first (the API shows
/// annotations in order).
pub fn annotations(record: &RunRecord, place: &Place) -> Vec<Annotation> {
    let mut failed: Vec<Annotation> = Vec::new();
    let mut rest: Vec<Annotation> = Vec::new();
    for s in &record.shards {
        let status = s.status.map_or("unfinished", |st| st.label());
        let line = place.line(&s.name);
        let annotation = |level, message: String, raw_details| Annotation {
            path: place.path.clone(),
            start_line: line,
            end_line: line,
            annotation_level: level,
            title: format!("{}: {status}", s.name),
            message,
            raw_details,
        };
        if s.status == Some(crate::run::events::ShardStatus::Quarantined) {
            rest.push(annotation(
                "warning",
                format!("{}\n{}", super::quarantine_line(s), timings(s)),
                None,
            ));
        } else if s.status == Some(crate::run::events::ShardStatus::Flaky) && !record.flaky_fails {
            rest.push(annotation(
                "warning",
                format!("{}\n{}", super::flaky_line(s), timings(s)),
                None,
            ));
        } else if s.status.is_some_and(|st| {
            st.exit(false).code() == 0 && st != crate::run::events::ShardStatus::Flaky
        }) {
            rest.push(annotation("notice", timings(s), None));
        } else {
            let cause = s.cause.clone().unwrap_or_else(|| format!("{} did not finish", s.name));
            let (_, tail) = s.failure_tail();
            let details = (!tail.is_empty())
                .then(|| summary::truncate(&collapse(tail).join("\n"), DETAILS_LIMIT));
            failed.push(annotation("failure", format!("{cause}\n{}", timings(s)), details));
        }
    }
    failed.extend(rest);
    failed
}

fn timings(s: &ShardRecord) -> String {
    let phases = &s.last().phases;
    let total = phases.total().map(short).unwrap_or_else(|| "–".into());
    format!("{total} in all: {}", phase_line(phases))
}

/// The title, summary and text of the check run's output, each within the API's limit (in
/// bytes, which are never fewer than characters).
pub fn output_text(record: &RunRecord) -> (String, String, String) {
    let title = summary::headline(record);
    let table = summary::table(record, OUTPUT_LIMIT / 2);
    let failures = summary::failures(record, OUTPUT_LIMIT - table.len());
    (title, table + &failures, summary::gantt(record, OUTPUT_LIMIT))
}

/// What publishing did: the check run's id and how many requests it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: u64,
    pub requests: usize,
}

/// Creates the completed check run and adds every annotation, 50 a request.
pub async fn publish(record: &RunRecord, target: &CheckRunTarget) -> anyhow::Result<Published> {
    let crab = octocrab::Octocrab::builder()
        .base_uri(target.api_url.as_str())
        .with_context(|| format!("GITHUB_API_URL `{}` is not a URL", target.api_url))?
        .personal_token(target.token.clone())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .context("cannot set up the GitHub client")?;
    tokio::time::timeout(BUDGET, send(&crab, record, target))
        .await
        .with_context(|| format!("the Checks API did not answer within {}s", BUDGET.as_secs()))?
}

async fn send(
    crab: &octocrab::Octocrab,
    record: &RunRecord,
    target: &CheckRunTarget,
) -> anyhow::Result<Published> {
    let (title, summary_md, text) = output_text(record);
    let all = annotations(record, &target.place);
    let mut batches = all.chunks(ANNOTATIONS_PER_REQUEST);
    let started = record.started_at.unwrap_or_else(SystemTime::now);
    let completed = started + record.duration;
    let conclusion = match record.exit_code {
        Some(0) => "success",
        Some(130 | 143) => "cancelled",
        _ => "failure",
    };
    let mut body = json!({
        "name": target.name,
        "head_sha": target.sha,
        "status": "completed",
        "conclusion": conclusion,
        "started_at": humantime::format_rfc3339_seconds(started).to_string(),
        "completed_at": humantime::format_rfc3339_seconds(completed).to_string(),
        "output": { "title": title, "summary": summary_md, "text": text, "annotations": batches.next().unwrap_or_default() },
    });
    if let Some(url) = &target.details_url {
        body["details_url"] = json!(url);
    }
    let route = format!("/repos/{}/{}/check-runs", target.owner, target.repo);
    let created: serde_json::Value = crab.post(&route, Some(&body)).await.map_err(explain)?;
    let id = created["id"].as_u64().context("the Checks API answered without a check run id")?;
    let mut requests = 1;
    for batch in batches {
        // An update's output replaces the run's: title, summary and text go again with each batch.
        let update = json!({ "output": { "title": title, "summary": summary_md, "text": text, "annotations": batch } });
        let _: serde_json::Value =
            crab.patch(format!("{route}/{id}"), Some(&update)).await.map_err(explain)?;
        requests += 1;
    }
    Ok(Published { id, requests })
}

/// Turns the API's answer into what the person reading the log can act on.
fn explain(e: octocrab::Error) -> anyhow::Error {
    match e {
        octocrab::Error::GitHub { source, .. } if source.status_code.as_u16() == 403 => {
            anyhow::anyhow!(
                "the Checks API refused the check run (403: {}); a pull request from a fork gets a read-only token — give the job `permissions: checks: write`, or leave checks off for forks",
                source.message
            )
        }
        octocrab::Error::GitHub { source, .. } => {
            anyhow::anyhow!("the Checks API answered {}: {}", source.status_code, source.message)
        }
        other => anyhow::anyhow!("cannot reach the Checks API: {other}"),
    }
}

/// Publishes and says how it went: a line on stderr (none with `-q`), or a failure as a warning
/// ([`Say::warning`]: under GitHub Actions an annotation, for which the GitHub reporter kept a
/// slot). A failure is never the run's failure.
pub async fn report(record: &RunRecord, target: Result<CheckRunTarget, anyhow::Error>, say: &Say) {
    let outcome = match target {
        Ok(target) => publish(record, &target).await.map(|p| (p, target)),
        Err(e) => Err(e),
    };
    match outcome {
        Ok((published, target)) => {
            say.note(format_args!(
                "check run `{}` published on {} (id {})",
                target.name, target.sha, published.id
            ));
        }
        Err(e) => say.warning("harper-shard checks", format_args!("{e:#}")),
    }
}
