//! The crash harness: on a random DAG, rollouts are killed at random points (SIGKILL,
//! SIGTERM, one or two Ctrl-Cs), steps fail and recover, `--keep-going` and `-j` vary, and a
//! second `resume` races the first. After every round the state must read and no step
//! process may outlive milepost; at the end every step has run, and none whose pass was
//! recorded ran again.
//!
//! `MILEPOST_CRASH_ROUNDS=300 cargo nextest run crash` is the nightly-sized run
//! (docs/testing.md); `MILEPOST_CRASH_SEED` replays one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use milepost::state::format::Record;
use milepost::state::history::run_dirs;
use milepost::state::journal;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random DAG: each step appends its name to `ledger`, records its process group in
/// `pgids/`, fails while `fail/<node>.<step>` exists, and takes 0–150 ms (the very first, 3 s).
fn workflow(rng: &mut Rng, nodes: usize) -> (String, Vec<(String, usize)>) {
    let mut text = String::from("workflow crash { parallelism 2 }\n");
    let mut steps = Vec::new();
    for i in 0..nodes {
        let mut deps: Vec<usize> =
            (0..rng.below(3)).filter(|_| i > 0).map(|_| rng.below(i as u64) as usize).collect();
        deps.sort();
        deps.dedup();
        let after = if deps.is_empty() {
            String::new()
        } else {
            format!("after {}; ", deps.iter().map(|d| format!("n{d}")).collect::<Vec<_>>().join(" "))
        };
        let count = 1 + rng.below(3) as usize;
        let mut runs = String::new();
        for s in 0..count {
            // The first step outlasts every kill, so the kill rounds catch it running; the
            // rest take 0–150 ms.
            let sleep =
                if i == 0 && s == 0 { "3".to_string() } else { format!("0.{:03}", rng.below(4) * 50) };
            runs.push_str(&format!(
                "run s{s} \"echo n{i}.s{s} >> ledger; echo $$ > pgids/n{i}.s{s}.$$; test ! -f fail/n{i}.s{s}; sleep {sleep}\"; "
            ));
            steps.push((format!("n{i}"), s));
        }
        text.push_str(&format!("module n{i} {{ budget \"1m\"; {after}install {{ {runs}}} }}\n"));
    }
    (text, steps)
}

/// Process groups recorded by steps that still have a live member.
fn live_groups(dir: &Path) -> Vec<i32> {
    let groups: HashSet<i32> = std::fs::read_dir(dir.join("pgids"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect();
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        // Only our steps: a group number can be reused by any process once ours are gone.
        let ours = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir);
        if let Some(pgrp) = fields.get(2).and_then(|p| p.parse::<i32>().ok()) {
            if ours && groups.contains(&pgrp) {
                live.push(pgrp);
            }
        }
    }
    live
}

fn spawn(bin: &Path, dir: &Path, command: &str, rng: &mut Rng) -> Child {
    let mut cmd = Command::new(bin);
    cmd.arg(command).arg(dir.join("w.kdl")).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null());
    if rng.chance(40) {
        cmd.arg("--keep-going");
    }
    if rng.chance(30) {
        cmd.arg("-j").arg((1 + rng.below(3)).to_string());
    }
    cmd.spawn().unwrap()
}

fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kills_failures_and_races_never_lose_or_repeat_a_recorded_step() {
    let rounds: u32 = std::env::var("MILEPOST_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let seed: u64 =
        std::env::var("MILEPOST_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_c0de);
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    // Canonical: it is compared with the working folders of processes.
    let dir = &dir.path().canonicalize().unwrap();
    for sub in ["pgids", "fail"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    let (text, steps) = workflow(&mut rng, 10);
    std::fs::write(dir.join("w.kdl"), &text).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let mut kills = 0;
    let mut rollouts = 0;
    let mut orphans = Vec::new();
    // A finished rollout is followed by a new one (`apply`), so every round has work to kill.
    let mut finished_rollout = true;
    for round in 0..rounds {
        let context = format!("seed {seed}, round {round}");
        // Failures come and go.
        if rng.chance(30) {
            let (node, s) = &steps[rng.below(steps.len() as u64) as usize];
            std::fs::write(dir.join(format!("fail/{node}.s{s}")), "").unwrap();
        }
        if rng.chance(40) {
            for e in std::fs::read_dir(dir.join("fail")).unwrap().flatten() {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        // This round's step groups only: the numbers of earlier ones may be reused.
        for e in std::fs::read_dir(dir.join("pgids")).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
        let command = if finished_rollout { "apply" } else { "resume" };
        let mut children = vec![spawn(&bin, dir, command, &mut rng)];
        if round > 0 && rng.chance(20) {
            children.push(spawn(&bin, dir, "resume", &mut rng));
        }
        let how = rng.below(5);
        if how < 4 {
            std::thread::sleep(Duration::from_millis(5 + rng.below(300)));
            for child in &mut children {
                if child.try_wait().unwrap().is_some() {
                    continue;
                }
                let pid = Pid::from_raw(child.id() as i32);
                let signals: &[Signal] = match how {
                    0 | 1 => &[Signal::SIGKILL],
                    2 => &[Signal::SIGTERM],
                    _ if rng.chance(50) => &[Signal::SIGINT],
                    _ => &[Signal::SIGINT, Signal::SIGINT],
                };
                for &signal in signals {
                    let _ = kill(pid, signal);
                    std::thread::sleep(Duration::from_millis(rng.below(50)));
                }
                kills += 1;
            }
        }
        for child in &mut children {
            assert!(wait(child, Duration::from_secs(60)).is_some(), "{context}: milepost did not end");
        }
        // No step may outlive the milepost that ran it by more than a moment.
        let gone = Instant::now();
        while !live_groups(dir).is_empty() && gone.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let live = live_groups(dir);
        if !live.is_empty() {
            orphans.push(format!("{context}: {live:?}"));
            for g in live {
                let _ = nix::sys::signal::killpg(Pid::from_raw(g), Signal::SIGKILL);
            }
        }
        let status = Command::new(&bin).arg("status").arg(dir.join("w.kdl")).arg("--json").output().unwrap();
        assert!(
            status.status.success(),
            "{context}: state unreadable: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        finished_rollout = status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done");
        rollouts += u32::from(finished_rollout);
    }
    for e in std::fs::read_dir(dir.join("fail")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let mut finished = false;
    for _ in 0..5 {
        let out = Command::new(&bin).arg("resume").arg(dir.join("w.kdl")).output().unwrap();
        if out.status.success() {
            finished = true;
            break;
        }
    }
    assert!(finished, "seed {seed}: the rollout never finished");
    assert!(orphans.is_empty(), "step processes outlived milepost: {orphans:?}");

    // Within each rollout (an `apply` and the resumes after it), no step whose pass was
    // recorded started again; the last one ran every step exactly once.
    let ledger = std::fs::read_to_string(dir.join("ledger")).unwrap();
    let ran: HashSet<&str> = ledger.lines().collect();
    let mut passed: HashMap<(String, usize), u32> = HashMap::new();
    for run in run_dirs(&crate::support::rollout_dir(dir)) {
        let records: Vec<Record> = journal::read(&run.join("journal.jsonl")).unwrap();
        for record in records {
            match record {
                Record::RunStart { command, .. } if command == "apply" => passed.clear(),
                Record::StepStart { node, index, .. } => {
                    let key = (node.clone(), index);
                    assert!(
                        !passed.contains_key(&key),
                        "seed {seed}: {node} step {index} ran again after its pass was recorded in {}",
                        run.display()
                    );
                }
                Record::StepEnd { node, index, outcome, .. } if outcome.passed() => {
                    *passed.entry((node, index)).or_default() += 1;
                }
                _ => {}
            }
        }
    }
    for (node, s) in &steps {
        assert!(ran.contains(format!("{node}.s{s}").as_str()), "seed {seed}: {node}.s{s} never ran");
        assert_eq!(passed.get(&(node.clone(), *s)), Some(&1), "seed {seed}: {node}.s{s}");
    }
    let status = Command::new(&bin).arg("status").arg(dir.join("w.kdl")).arg("--json").output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");
    eprintln!(
        "crash harness: seed {seed}, {rounds} rounds, {kills} kills, {rollouts} rollouts finished, {} steps, 0 violations",
        steps.len()
    );
}
