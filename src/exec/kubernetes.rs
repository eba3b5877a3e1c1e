//! The `apply` and `wait` steps: calls on the cluster preflight connected, one line per object
//! or state change in the step's log, and an outcome whose reason is the API server's.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::events::Outcome;
use super::step::StepContext;
use crate::cluster::apply::{self, ApplyOptions, Change};
use crate::cluster::manifest::{self, Document};
use crate::cluster::wait::{self, WaitError};
use crate::spec::values::human;
use crate::spec::{Manifest, Step, StepKind};

/// How long an `apply` step without a `timeout` may take.
pub const APPLY_DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs one `apply` or `wait` step, at most `limit`, and says whether another attempt could
/// end otherwise. What it logs and the reason it gives have secret values masked: the API
/// server quotes objects back in its errors.
pub async fn run(step: &Step, cx: &StepContext<'_>, limit: Duration) -> (Outcome, bool) {
    let secrets = cx.secrets;
    let mask = |text: &str| crate::template::mask(text, secrets);
    let (outcome, may_heal) = run_unmasked(step, cx, limit, &mask).await;
    let outcome = match outcome {
        Outcome::Passed => Outcome::Passed,
        Outcome::Failed { reason } => Outcome::Failed { reason: mask(&reason) },
        Outcome::TimedOut { reason } => Outcome::TimedOut { reason: mask(&reason) },
        Outcome::Cancelled { reason } => Outcome::Cancelled { reason: mask(&reason) },
    };
    (outcome, may_heal)
}

async fn run_unmasked(
    step: &Step,
    cx: &StepContext<'_>,
    limit: Duration,
    mask: &(dyn Fn(&str) -> String + Sync),
) -> (Outcome, bool) {
    let Some(cluster) = cx.cluster else {
        return (
            Outcome::Failed { reason: "no Kubernetes connection: preflight did not connect".into() },
            false,
        );
    };
    let log_path = cx.log;
    let mut log = |line: &str| {
        if let Ok(mut f) = std::fs::File::options().create(true).append(true).open(log_path) {
            let _ = writeln!(f, "{}", mask(line));
        }
    };
    match &step.kind {
        StepKind::Apply { path, namespace, force, manifests } => {
            let documents = match documents(path, manifests) {
                Ok(d) => d,
                // An earlier step of the node may write the files: reading again can help.
                Err(reason) => return (Outcome::Failed { reason }, true),
            };
            let field_manager = apply::field_manager(cx.node, &step.name);
            let options = ApplyOptions {
                namespace: namespace.as_deref(),
                force: *force,
                dry_run: false,
                field_manager: &field_manager,
            };
            let applying = apply::apply(cluster, &documents, options, &mut log);
            match tokio::time::timeout(limit, applying).await {
                Err(_) => (
                    Outcome::TimedOut { reason: format!("the apply did not finish in {}", human(limit)) },
                    true,
                ),
                Ok(Err(refused)) => (Outcome::Failed { reason: refused.reason }, refused.may_heal),
                Ok(Ok(applied)) => {
                    let count = |c: Change| applied.iter().filter(|a| a.change == c).count();
                    log(&format!(
                        "{} object(s): {} created, {} changed, {} unchanged",
                        applied.len(),
                        count(Change::Created),
                        count(Change::Changed),
                        count(Change::Unchanged)
                    ));
                    (Outcome::Passed, true)
                }
            }
        }
        StepKind::Wait { resource, namespace, until } => {
            match wait::wait(cluster, resource, namespace.as_deref(), until, limit, &mut log).await {
                Ok(done) => {
                    log(&done);
                    (Outcome::Passed, true)
                }
                Err(WaitError::TimedOut(reason)) => (Outcome::TimedOut { reason }, true),
                Err(WaitError::Refused(reason)) => (Outcome::Failed { reason }, false),
            }
        }
        _ => unreachable!("only apply and wait steps reach the cluster"),
    }
}

/// The documents to apply: rendered at load time, or read now when an earlier `template`
/// step of the node wrote them.
pub fn documents(path: &Path, manifests: &[Manifest]) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    if manifests.is_empty() {
        let files = manifest::files(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            documents.extend(manifest::parse(&file, &text).map_err(|e| e.to_string())?);
        }
    } else {
        for m in manifests {
            documents.extend(manifest::parse(&m.file, &m.text.exec).map_err(|e| e.to_string())?);
        }
    }
    if documents.is_empty() {
        return Err(format!("no Kubernetes object in {}", path.display()));
    }
    Ok(documents)
}
