//! `wait kind/name`: until a condition holds, a rollout completes, or the object is gone —
//! on a watch, never a sleep loop. A dropped watch is re-established (the watcher re-lists);
//! on timeout the step reports what it saw last.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;

use super::{describe, is_namespaced, Cluster};
use crate::spec::WaitFor;

/// How a wait ended, when it did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline came first; what was seen last.
    TimedOut(String),
    /// The server refused (RBAC, unknown kind): waiting longer cannot help.
    Refused(String),
}

/// Waits for `resource` (`kind/name`) in `namespace` until `until`, at most `limit`.
/// `log` gets a line whenever the observed state changes.
///
/// # Errors
/// [`WaitError`] with the reason a person reads.
pub async fn wait(
    cluster: &Cluster,
    resource: &str,
    namespace: Option<&str>,
    until: &WaitFor,
    limit: Duration,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<String, WaitError> {
    let (kind, name) = resource.split_once('/').unwrap_or((resource, ""));
    let (api_resource, caps) = cluster.find_kind(kind).await.map_err(WaitError::Refused)?;
    if *until == WaitFor::Rollout
        && !matches!(api_resource.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet")
    {
        return Err(WaitError::Refused(format!(
            "a {} has no rollout to wait for (Deployment, StatefulSet and DaemonSet do); \
             wait for a condition instead, e.g. condition=Ready",
            api_resource.kind
        )));
    }
    let namespace = is_namespaced(&caps).then(|| namespace.unwrap_or(&cluster.namespace).to_string());
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &api_resource),
        None => Api::all_with(cluster.client.clone(), &api_resource),
    };
    let place = namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default();
    let target = format!("{}/{name}{place}", api_resource.kind.to_lowercase());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);

    let deadline = tokio::time::Instant::now() + limit;
    let mut last: Option<DynamicObject> = None;
    let mut last_line = String::new();
    let mut listed_since_init = false;
    // Since when and why the watch has been failing, and whether the server answered at all.
    let mut failing: Option<(tokio::time::Instant, String, bool)> = None;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                let seen = match &last {
                    Some(object) => format!("last seen: {}", summary(object, until, &api_resource.kind)),
                    None => "it was never seen".to_string(),
                };
                // The limit is what was left of the step's timeout: round it as a person set it.
                let waited =
                    crate::spec::values::human(Duration::from_secs(limit.as_secs_f64().round() as u64));
                let unreachable = match &failing {
                    Some((since, why, answered)) => {
                        let how_long = crate::spec::values::human(Duration::from_secs(
                            since.elapsed().as_secs_f64().round() as u64,
                        ));
                        let what =
                            if *answered { "answered the watch with errors" } else { "could not be reached" };
                        format!("; the API server {what} for the last {how_long} ({why}), so the state may have changed unseen")
                    }
                    None => String::new(),
                };
                return Err(WaitError::TimedOut(format!(
                    "{target} not {until} after {waited}; {seen}{unreachable}"
                )));
            }
            Ok(None) => return Err(WaitError::TimedOut(format!("the watch on {target} ended"))),
            Ok(Some(next)) => next,
        };
        if next.is_ok() {
            failing = None;
        }
        match next {
            Ok(Event::Init) => listed_since_init = false,
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                listed_since_init = true;
                let line = summary(&object, until, &api_resource.kind);
                if line != last_line {
                    log(&format!("{target}: {line}"));
                    last_line = line;
                }
                let done = satisfied(&object, until, &api_resource.kind);
                last = Some(object);
                if done {
                    return Ok(format!("{target} {until}"));
                }
            }
            Ok(Event::Delete(_)) => {
                log(&format!("{target}: deleted"));
                last = None;
                if *until == WaitFor::Deleted {
                    return Ok(format!("{target} deleted"));
                }
            }
            Ok(Event::InitDone) => {
                if *until == WaitFor::Deleted && !listed_since_init {
                    return Ok(format!("{target} deleted (not present)"));
                }
            }
            Err(error) => {
                if let Some(refused) = refusal(&error, &api_resource.plural, name, namespace.as_deref()) {
                    return Err(WaitError::Refused(refused));
                }
                let why = super::causes(&error);
                let answered = matches!(
                    &error,
                    watcher::Error::InitialListFailed(kube::Error::Api(_))
                        | watcher::Error::WatchStartFailed(kube::Error::Api(_))
                        | watcher::Error::WatchError(_)
                );
                match &mut failing {
                    Some((_, last, last_answered)) => (*last, *last_answered) = (why.clone(), answered),
                    None => failing = Some((tokio::time::Instant::now(), why.clone(), answered)),
                }
                log(&format!("watch interrupted ({why}); watching again"));
            }
        }
    }
}

/// An error that waiting longer cannot fix: forbidden, or the resource is not served.
fn refusal(error: &watcher::Error, plural: &str, name: &str, namespace: Option<&str>) -> Option<String> {
    let inner = match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => e,
        _ => return None,
    };
    match inner {
        kube::Error::Api(status) if matches!(status.code, 401 | 403 | 404) => {
            Some(describe(inner, "watch", &format!("{plural} `{name}`"), namespace))
        }
        _ => None,
    }
}

/// `Ready=True` in `status.conditions`, or a `type=status` pair such as `Ready=False`.
fn condition_holds(object: &DynamicObject, wanted: &str) -> bool {
    let (kind, status) = wanted.split_once('=').unwrap_or((wanted, "True"));
    conditions(object).iter().any(|(t, s, _)| t.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(status))
}

fn conditions(object: &DynamicObject) -> Vec<(String, String, String)> {
    let list = object.data.pointer("/status/conditions").and_then(Value::as_array);
    list.map(|items| {
        items
            .iter()
            .map(|c| {
                let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let why = [text("reason"), text("message")]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>();
                (text("type"), text("status"), why.join(": "))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn number(object: &DynamicObject, pointer: &str) -> Option<i64> {
    object.data.pointer(pointer).and_then(Value::as_i64)
}

/// What `kubectl rollout status` checks, per kind; other kinds have no rollout. `kind` is
/// the one discovery resolved: objects from the watcher's first list carry no kind of their
/// own (a real server leaves it out of list items).
fn rollout_complete(object: &DynamicObject, kind: &str) -> bool {
    let generation = object.metadata.generation.unwrap_or(0);
    let observed = number(object, "/status/observedGeneration").unwrap_or(-1);
    if observed < generation {
        return false;
    }
    let n = |p: &str| number(object, p).unwrap_or(0);
    match kind {
        "Deployment" => {
            let want = number(object, "/spec/replicas").unwrap_or(1);
            n("/status/updatedReplicas") >= want
                && n("/status/replicas") == n("/status/updatedReplicas")
                && n("/status/availableReplicas") >= n("/status/updatedReplicas")
        }
        "StatefulSet" => {
            let want = number(object, "/spec/replicas").unwrap_or(1);
            let revisions_match = object.data.pointer("/status/updateRevision")
                == object.data.pointer("/status/currentRevision")
                || object.data.pointer("/status/updateRevision").is_none();
            n("/status/readyReplicas") >= want && n("/status/updatedReplicas") >= want && revisions_match
        }
        "DaemonSet" => {
            let want = n("/status/desiredNumberScheduled");
            n("/status/updatedNumberScheduled") >= want && n("/status/numberAvailable") >= want
        }
        _ => false,
    }
}

fn satisfied(object: &DynamicObject, until: &WaitFor, kind: &str) -> bool {
    match until {
        WaitFor::Condition(c) => condition_holds(object, c),
        WaitFor::Rollout => rollout_complete(object, kind),
        WaitFor::Deleted => false,
    }
}

/// The observed state in one line: conditions, and replica counts for rollouts.
fn summary(object: &DynamicObject, until: &WaitFor, kind: &str) -> String {
    let mut parts: Vec<String> = conditions(object)
        .into_iter()
        .map(|(t, s, why)| if why.is_empty() { format!("{t}={s}") } else { format!("{t}={s} ({why})") })
        .collect();
    if *until == WaitFor::Rollout {
        // A count the server leaves out is 0: it omits most zero counts.
        let n = |p: &str| number(object, p).unwrap_or(0);
        let generation = format!(
            "generation {} observed {}",
            object.metadata.generation.unwrap_or(0),
            n("/status/observedGeneration")
        );
        let counts = match kind {
            "DaemonSet" => format!(
                "desired {} current {} updated {} ready {} available {}",
                n("/status/desiredNumberScheduled"),
                n("/status/currentNumberScheduled"),
                n("/status/updatedNumberScheduled"),
                n("/status/numberReady"),
                n("/status/numberAvailable"),
            ),
            _ => format!(
                "replicas {} updated {} ready {} available {}",
                n("/status/replicas"),
                n("/status/updatedReplicas"),
                n("/status/readyReplicas"),
                n("/status/availableReplicas"),
            ),
        };
        parts.insert(0, format!("{generation}, {counts}"));
    }
    if parts.is_empty() {
        "no status conditions yet".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn conditions_match_by_type_and_status() {
        let o = object(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "status": {"conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
            ]}
        }));
        assert!(condition_holds(&o, "Available"));
        assert!(condition_holds(&o, "available=true"));
        assert!(condition_holds(&o, "Progressing=False"));
        assert!(!condition_holds(&o, "Progressing"));
        assert!(!condition_holds(&o, "Ready"));
        assert_eq!(
            summary(&o, &WaitFor::Condition("Ready".into()), "Deployment"),
            "Available=True, Progressing=False (ProgressDeadlineExceeded: too slow)"
        );
    }

    #[test]
    fn a_deployment_rollout_needs_the_new_generation_everywhere() {
        let deployment = |observed: i64, updated: i64, available: i64, replicas: i64| {
            object(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "generation": 2},
                "spec": {"replicas": 3},
                "status": {"observedGeneration": observed, "replicas": replicas,
                           "updatedReplicas": updated, "availableReplicas": available}
            }))
        };
        let rollout_complete_deployment = |o: &DynamicObject| rollout_complete(o, "Deployment");
        assert!(rollout_complete_deployment(&deployment(2, 3, 3, 3)));
        assert!(!rollout_complete_deployment(&deployment(1, 3, 3, 3)), "old generation observed");
        assert!(!rollout_complete_deployment(&deployment(2, 2, 3, 3)), "one pod still old");
        assert!(!rollout_complete_deployment(&deployment(2, 3, 3, 4)), "an old pod still terminating");
        assert!(!rollout_complete_deployment(&deployment(2, 3, 2, 3)), "one new pod not available");
    }

    #[test]
    fn summaries_count_omitted_as_zero_and_daemonsets_by_their_own_fields() {
        let deployment = object(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 1},
            "spec": {"replicas": 0}, "status": {"observedGeneration": 1, "terminatingReplicas": 0}
        }));
        assert_eq!(
            summary(&deployment, &WaitFor::Rollout, "Deployment"),
            "generation 1 observed 1, replicas 0 updated 0 ready 0 available 0"
        );
        let ds = object(serde_json::json!({
            "metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "currentNumberScheduled": 2, "desiredNumberScheduled": 3,
                       "numberMisscheduled": 0, "numberReady": 1}
        }));
        assert_eq!(
            summary(&ds, &WaitFor::Rollout, "DaemonSet"),
            "generation 1 observed 1, desired 3 current 2 updated 0 ready 1 available 0"
        );
    }

    #[test]
    fn statefulsets_and_daemonsets_roll_out_by_their_own_counts() {
        let sts = object(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "generation": 1},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                       "currentRevision": "s-1", "updateRevision": "s-1"}
        }));
        assert!(rollout_complete(&sts, "StatefulSet"));
        let ds = object(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
                       "updatedNumberScheduled": 3, "numberAvailable": 2}
        }));
        assert!(!rollout_complete(&ds, "DaemonSet"));
    }
}
