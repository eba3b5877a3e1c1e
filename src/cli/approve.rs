//! `milepost approve` and `milepost reject`: a person's decision on a node that waits for
//! approval. Decisions go to the rollout's approvals store, never to its journals, so they
//! can be made while `apply` waits holding the rollout's lock; the waiting run, or the next
//! `resume`, reads them.

use std::path::PathBuf;

use clap::Args;

use super::{exit, CliError, Cx, DefinitionArgs};
use crate::exec::approval::{Request, Verdict};
use crate::spec::Workflow;
use crate::state::approvals::{tally, Choice, Decision};
use crate::state::history::History;
use crate::ui::errln;

/// The longest note kept: a reason for the record, not a document.
const NOTE_LIMIT: usize = 4096;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The module or gate that waits for approval.
    node: String,
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// A note for the record (status, history and reports show it).
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    /// The state root (default: .milepost beside the workflow).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The module or gate that waits for approval.
    node: String,
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// Why: the node fails with this reason, and reports show it.
    #[arg(long, value_name = "TEXT")]
    note: String,
    /// The state root (default: .milepost beside the workflow).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub fn approve(cx: &Cx, args: &ApproveArgs) -> Result<u8, CliError> {
    let what = Deciding {
        node: &args.node,
        definitions: &args.definitions,
        state_dir: args.state_dir.as_ref(),
        choice: Choice::Approved,
        note: args.note.as_deref(),
    };
    decide(cx, what)
}

pub fn reject(cx: &Cx, args: &RejectArgs) -> Result<u8, CliError> {
    let what = Deciding {
        node: &args.node,
        definitions: &args.definitions,
        state_dir: args.state_dir.as_ref(),
        choice: Choice::Rejected,
        note: Some(&args.note),
    };
    decide(cx, what)
}

struct Deciding<'a> {
    node: &'a str,
    definitions: &'a DefinitionArgs,
    state_dir: Option<&'a PathBuf>,
    choice: Choice,
    note: Option<&'a str>,
}

fn refused(message: String) -> CliError {
    CliError::Usage { message }
}

fn decide(cx: &Cx, what: Deciding) -> Result<u8, CliError> {
    let note = what.note.map(str::trim).filter(|n| !n.is_empty());
    if what.choice == Choice::Rejected && note.is_none() {
        return Err(refused(
            "a rejection needs a reason: --note \"what is wrong\" (the node fails with it)".into(),
        ));
    }
    if let Some(note) = note.filter(|n| n.len() > NOTE_LIMIT) {
        return Err(refused(format!(
            "the note is {} bytes; at most {NOTE_LIMIT} are kept: link to the long version",
            note.len()
        )));
    }
    // A note is shown by `status`, `history`, `resume` and the reports, on terminals and in
    // HTML: an escape sequence in it would be obeyed by the terminal of whoever reads it
    // (retitle it, clear it, hide text). Lines and tabs are text; other control characters
    // are refused here, where the person can write the note again.
    if let Some((at, c)) =
        note.and_then(|n| n.chars().enumerate().find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t')))
    {
        return Err(refused(format!(
            "the note has a control character (U+{:04X}) at character {}: write it as plain text",
            c as u32,
            at + 1
        )));
    }
    let workflow = what.definitions.load()?.workflow;
    let command = match what.choice {
        Choice::Approved => "approve",
        Choice::Rejected => "reject",
    };
    let Some(index) = workflow.node(what.node) else {
        let ids = workflow.nodes.iter().map(|n| n.id.as_str());
        let near = crate::spec::diagnostic::did_you_mean(what.node, ids.clone())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        return Err(refused(format!(
            "no module or gate `{}` in {}; {near}known: {}",
            what.node,
            workflow.id,
            ids.collect::<Vec<_>>().join(", ")
        )));
    };
    let node = &workflow.nodes[index];
    let in_env = workflow.environment().map(|e| format!(" in environment `{}`", e.name)).unwrap_or_default();
    let Some(approval) = &node.approval else {
        return Err(refused(format!(
            "`{}` needs no approval{in_env}: no `approval` line of it applies here, so there is nothing to {command}",
            node.id
        )));
    };
    let dir = super::rollout_dir(&workflow, what.state_dir.map(PathBuf::as_path), command)?;
    let history = History::load(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
    let resume = resume_hint(&workflow, what.state_dir);
    let Some(request) = history.approvals.get(&node.id) else {
        let why = match history.nodes.get(&node.id) {
            Some(end) if end.outcome.passed() => "it went on already (its request was answered)".to_string(),
            _ if history.rejected.contains(&node.id) => {
                format!("its request was rejected; `{resume}` runs its checks again and asks anew")
            }
            _ => {
                "no run has asked for its approval yet: `milepost apply` or `resume` asks when it gets there"
                    .to_string()
            }
        };
        return Err(refused(format!("`{}` is not waiting for approval{in_env}: {why}", node.id)));
    };
    if request.source_hash != node.source_hash {
        return Err(refused(format!(
            "the definition of `{}` changed since run {} asked for approval (its steps differ): a decision \
             now would vouch for checks that no longer exist. `{resume}` runs the new checks and asks again",
            node.id, request.run_id
        )));
    }
    let me = super::identity(&workflow)?;
    if !me.may_decide(&approval.from) {
        return Err(refused(format!(
            "you ({}, groups {}) may not decide on `{}`: it needs approval from {}",
            me.user,
            me.groups.join(", "),
            node.id,
            approval.who()
        )));
    }
    let store = super::approval_store(&workflow, &dir);
    let decisions = store.decisions().map_err(|e| CliError::State { message: e.to_string() })?;
    let asked = Request { run_id: request.run_id.clone(), source_hash: request.source_hash.clone() };
    let p = cx.err;
    match tally(&node.id, &asked, approval.required, &approval.from, &decisions) {
        Verdict::Rejected { by, note } => {
            return Err(refused(format!(
                "`{}` was rejected already by {by} ({note}); `{resume}` runs its checks again and asks anew",
                node.id
            )));
        }
        Verdict::Approved { by } if what.choice == Choice::Approved => {
            errln!(
                "{} `{}` has its approvals already ({}); nothing recorded. `{resume}` goes on",
                p.green("✓"),
                node.id,
                by.join(", ")
            );
            return Ok(exit::SUCCESS);
        }
        // Decided already: a rejection now would come after the rollout was let go on, and
        // would claim a failure the run never sees.
        Verdict::Approved { by } => {
            return Err(refused(format!(
                "`{}` has its approvals already ({}): the decision is made and the rollout goes on. To stop \
                 it, stop the run (Ctrl-C) or undo it afterwards with `milepost rollback`",
                node.id,
                by.join(", ")
            )));
        }
        Verdict::Waiting { approved_by }
            if what.choice == Choice::Approved && approved_by.contains(&me.user) =>
        {
            // Counts once per person: saying it again is not a second approval.
            errln!(
                "{} you ({}) approved this request of `{}` already; an approval counts once per person: {} of {} so far",
                p.yellow("⚠"),
                me.user,
                node.id,
                approved_by.len(),
                approval.required
            );
            return Ok(exit::SUCCESS);
        }
        _ => {}
    }
    let decision = Decision {
        decision: what.choice,
        node: node.id.clone(),
        request: request.run_id.clone(),
        workflow: workflow.id.clone(),
        environment: workflow.environment_name().to_string(),
        user: me.user.clone(),
        groups: me.groups.clone(),
        at: crate::state::format::now(),
        source_hash: request.source_hash.clone(),
        note: note.map(String::from),
        evidence: request.evidence.clone(),
    };
    store.add(&decision).map_err(|e| CliError::State { message: e.to_string() })?;
    match what.choice {
        Choice::Approved => {
            let mut all = decisions;
            all.push(decision);
            let (count, done) = match tally(&node.id, &asked, approval.required, &approval.from, &all) {
                Verdict::Approved { by } => (by.len(), true),
                Verdict::Waiting { approved_by } => (approved_by.len(), false),
                Verdict::Rejected { .. } => (0, false),
            };
            errln!(
                "{} approved `{}` (the request of run {}) as {}: {count} of {} approval(s)",
                p.green("✓"),
                node.id,
                request.run_id,
                me.user,
                approval.required
            );
            if done {
                errln!(
                    "{}",
                    p.dim(&format!(
                        "an `apply` waiting at a terminal goes on by itself; otherwise `{resume}`"
                    ))
                );
            } else {
                errln!("{}", p.dim("it waits for more: approvals count once per person"));
            }
        }
        Choice::Rejected => {
            errln!(
                "{} rejected `{}` (the request of run {}) as {}: it fails with your note",
                p.red("✗"),
                node.id,
                request.run_id,
                me.user
            );
            errln!(
                "{}",
                p.dim(&format!(
                    "a waiting `apply` stops it by itself; otherwise `{resume}` records it failed (a later resume runs its checks again)"
                ))
            );
        }
    }
    Ok(exit::SUCCESS)
}

/// `milepost resume <file> [--env E] [--state-dir DIR]` for messages.
fn resume_hint(workflow: &Workflow, state_dir: Option<&PathBuf>) -> String {
    let mut words = vec!["milepost".to_string(), "resume".to_string(), workflow.file.display().to_string()];
    if let Some(env) = workflow.environment() {
        words.extend(["--env".to_string(), env.name.clone()]);
    }
    for (name, value) in &workflow.var_overrides {
        words.extend(["--var".to_string(), format!("{name}={value}")]);
    }
    if let Some(dir) = state_dir {
        words.extend(["--state-dir".to_string(), dir.display().to_string()]);
    }
    shell_words::join(words)
}
