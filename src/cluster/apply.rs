//! Server-side apply, as `kubectl apply --server-side` does it, with one field manager per
//! step (`milepost/<node>/<step>`): each object resolved through discovery, namespaced kinds
//! defaulted to a namespace, and the result read back as created, changed or unchanged.
//!
//! Objects applied before per-step managers were owned by the single manager `milepost`; the
//! first apply by a step's own manager takes them over (see [`LEGACY_FIELD_MANAGER`]).

use std::fmt;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use sha2::{Digest, Sha256};

use super::manifest::Document;
use super::{describe, group_version_kind, is_namespaced, may_heal, Cluster};

/// The one field manager every step used before managers were per step. A step's apply
/// takes over what it owned: a conflict with it alone is forced, and its `Apply` entry is
/// dropped from `managedFields` once the step's own manager has applied.
pub const LEGACY_FIELD_MANAGER: &str = "milepost";

/// The API server refuses a `fieldManager` longer than this.
pub const FIELD_MANAGER_MAX: usize = 128;

/// The field manager of one step: `milepost/<node>/<step>`. Names too long for the API
/// keep the start of both the node and the step (each gets at least half the room, and what
/// the other leaves) and end in `-` and 8 hex digits of the full name's SHA-256, so they
/// stay readable, distinct and the same on every run.
pub fn field_manager(node: &str, step: &str) -> String {
    let full = format!("{LEGACY_FIELD_MANAGER}/{node}/{step}");
    // A `/` in a name would let two steps share a manager (`a/b`+`c`, `a`+`b/c`), and the
    // API refuses characters that do not print: such names get the hashed form.
    let plain = |name: &str| !name.is_empty() && name.chars().all(|c| c != '/' && !c.is_control());
    if full.len() <= FIELD_MANAGER_MAX && plain(node) && plain(step) {
        return full;
    }
    let node: String = node.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
    let step: String = step.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
    let (node, step) = (node.as_str(), step.as_str());
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    // `milepost/` + node + `/` + step + `-` + hash
    let room = FIELD_MANAGER_MAX - LEGACY_FIELD_MANAGER.len() - 1 - 1 - 1 - hash.len();
    let node_room = node.len().min((room / 2).max(room.saturating_sub(step.len())));
    let step_room = step.len().min(room - node_room);
    let cut = |text: &str, mut at: usize| {
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text[..at].to_string()
    };
    format!("{LEGACY_FIELD_MANAGER}/{}/{}-{hash}", cut(node, node_room), cut(step, step_room))
}

/// How long to wait for a CRD applied earlier in the same step to be served.
const CRD_ESTABLISH: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Changed,
    Unchanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        })
    }
}

/// Why an apply stopped: the first object refused, with its file and line and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub reason: String,
    /// False when the same request would be refused again (see [`super::may_heal`]): a
    /// step's `retries` are not spent on it.
    pub may_heal: bool,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One object's result, as the step's log lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `configmap/app-settings`.
    pub reference: String,
    pub namespace: Option<String>,
    pub change: Change,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:<9} {} -n {ns}", self.change.to_string(), self.reference),
            None => write!(f, "{:<9} {}", self.change.to_string(), self.reference),
        }
    }
}

/// What a step asks for beside its documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions<'a> {
    /// The step's `namespace`; else the cluster's default.
    pub namespace: Option<&'a str>,
    /// Take over fields another manager owns.
    pub force: bool,
    /// `dryRun=All`: the server validates and answers, nothing is stored (`plan --server`).
    pub dry_run: bool,
    /// The step's own manager, [`field_manager`].
    pub field_manager: &'a str,
}

/// Namespaces and CRDs first, so the objects in them can be applied in the same step; the
/// rest in file order.
fn apply_order(documents: &[Document]) -> Vec<&Document> {
    let rank = |d: &Document| match d.kind() {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    };
    let mut ordered: Vec<&Document> = documents.iter().collect();
    ordered.sort_by_key(|d| rank(d));
    ordered
}

/// How many objects of a step are applied at once, after its Namespaces and CRDs (which go
/// one by one, in order). Each object is a GET and a PATCH; over a network the round trips
/// dominate (`cargo bench --bench scale -- apply`, docs/kubernetes.md).
pub const APPLY_CONCURRENCY: usize = 8;

/// What the Namespaces and CRDs applied so far in a step tell the objects after them.
#[derive(Default)]
struct StepSoFar {
    /// Groups of the CRDs this step applied: their kinds may take a moment to be served.
    crd_groups: Vec<String>,
    /// Namespaces a dry run would create: the server cannot check objects in them.
    new_namespaces: Vec<String>,
}

/// Applies every document; `log` receives one line per object, in the order of
/// [`apply_order`], as each is applied.
///
/// # Errors
/// The first object the server refuses, with its file and line, and the reason.
pub async fn apply(
    cluster: &Cluster,
    documents: &[Document],
    options: ApplyOptions<'_>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Applied>, ApplyError> {
    apply_with(cluster, documents, options, APPLY_CONCURRENCY, log).await
}

/// [`apply`] with up to `concurrency` objects in flight once the Namespaces and CRDs are
/// applied, within each run of consecutive documents of one kind; a change of kind waits
/// for everything before it. Results and log lines keep the order of [`apply_order`]; a
/// refusal ends the step: nothing new starts, the objects already in flight finish and are
/// logged (so up to `concurrency - 1` objects after the refused one may be applied).
///
/// # Errors
/// The first object the server refuses, with its file and line, and the reason.
pub async fn apply_with(
    cluster: &Cluster,
    documents: &[Document],
    options: ApplyOptions<'_>,
    concurrency: usize,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Applied>, ApplyError> {
    use futures::StreamExt;

    type Pending<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = (Result<Applied, ApplyError>, Vec<String>)> + Send + 'a>,
    >;
    let mut so_far = StepSoFar::default();
    let mut results = Vec::new();
    let mut rest: Vec<&Document> = Vec::new();
    for doc in apply_order(documents) {
        if !rest.is_empty() || !matches!(doc.kind(), "Namespace" | "CustomResourceDefinition") {
            rest.push(doc);
            continue;
        }
        let (result, lines) = apply_one(cluster, doc, options, &so_far).await;
        for line in &lines {
            log(line);
        }
        let applied = result?;
        if doc.kind() == "CustomResourceDefinition" {
            if let Some(group) = doc.object.data.pointer("/spec/group").and_then(|g| g.as_str()) {
                so_far.crd_groups.push(group.to_string());
            }
        }
        if options.dry_run && applied.change == Change::Created && doc.kind() == "Namespace" {
            so_far.new_namespaces.push(doc.name().to_string());
        }
        results.push(applied);
    }
    let so_far = &so_far;
    // File order between kinds (a Role before its RoleBinding, a ServiceAccount before its
    // token Secret, a CRD's first object before the rest), concurrency within a run of
    // documents of one kind, which do not depend on each other.
    for wave in rest.chunk_by(|a, b| a.kind() == b.kind() && a.api_version() == b.api_version()) {
        let (first, others) = wave.split_first().expect("chunks are not empty");
        let (result, lines) = apply_one(cluster, first, options, so_far).await;
        for line in &lines {
            log(line);
        }
        results.push(result?);
        let mut queue = others.iter();
        let mut in_flight: futures::stream::FuturesOrdered<Pending<'_>> = Default::default();
        for doc in queue.by_ref().take(concurrency.max(1)) {
            in_flight.push_back(Box::pin(apply_one(cluster, doc, options, so_far)));
        }
        // On a refusal nothing new starts, but what is in flight finishes and is logged: the
        // log lists everything the step applied.
        let mut refused = None;
        while let Some((result, lines)) = in_flight.next().await {
            for line in &lines {
                log(line);
            }
            match result {
                Ok(applied) => results.push(applied),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
            if refused.is_none() {
                if let Some(doc) = queue.next() {
                    in_flight.push_back(Box::pin(apply_one(cluster, doc, options, so_far)));
                }
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
    }
    Ok(results)
}

/// Applies one document; the result and the log lines it gave.
async fn apply_one(
    cluster: &Cluster,
    doc: &Document,
    options: ApplyOptions<'_>,
    so_far: &StepSoFar,
) -> (Result<Applied, ApplyError>, Vec<String>) {
    let mut lines = Vec::new();
    let result = {
        let mut log = |line: &str| lines.push(line.to_string());
        apply_logged(cluster, doc, options, so_far, &mut log).await
    };
    (result, lines)
}

async fn apply_logged(
    cluster: &Cluster,
    doc: &Document,
    options: ApplyOptions<'_>,
    so_far: &StepSoFar,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Applied, ApplyError> {
    let at = format!("{}:{}", crate::spec::source::display_path(&doc.file), doc.line);
    let gvk = group_version_kind(doc.api_version(), doc.kind());
    let (resource, caps) = match cluster.resolve(&gvk).await {
        Ok(found) => Ok(found),
        // A dry run never creates the CRD, so its objects cannot be checked yet.
        Err(_) if options.dry_run && so_far.crd_groups.contains(&gvk.group) => {
            let unchecked = Applied { reference: doc.reference(), namespace: None, change: Change::Created };
            log(&format!("{unchecked} (its CRD is new in this step: not checked)"));
            return Ok(unchecked);
        }
        // A CRD from this very step takes a moment to be served.
        Err(_) if so_far.crd_groups.contains(&gvk.group) => wait_for_kind(cluster, &gvk, log).await,
        Err(reason) => Err(reason),
    }
    .map_err(|reason| ApplyError {
        reason: format!("{at}: {}: {reason}", doc.reference()),
        may_heal: true,
    })?;
    let namespace = is_namespaced(&caps).then(|| {
        doc.object
            .metadata
            .namespace
            .clone()
            .or_else(|| options.namespace.map(String::from))
            .unwrap_or_else(|| cluster.namespace.clone())
    });
    // Nor does it create the namespace: the server would answer 404 for the namespace.
    if options.dry_run && namespace.as_ref().is_some_and(|ns| so_far.new_namespaces.contains(ns)) {
        let unchecked = Applied { reference: doc.reference(), namespace, change: Change::Created };
        log(&format!("{unchecked} (its namespace is new in this step: not checked)"));
        return Ok(unchecked);
    }
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        None => Api::all_with(cluster.client.clone(), &resource),
    };
    let mut object = doc.object.clone();
    // Cluster-scoped kinds have no namespace, whatever the file says.
    object.metadata.namespace = namespace.clone();
    let name = doc.name();
    let what = format!("{} `{name}`", resource.plural);
    let refused = |e: kube::Error, verb: &str| ApplyError {
        reason: format!("{at}: {}", describe(&e, verb, &what, namespace.as_deref())),
        may_heal: may_heal(&e),
    };
    let before = api.get_opt(name).await.map_err(|e| refused(e, "get"))?;
    let mut params = PatchParams::apply(options.field_manager);
    if options.force {
        params = params.force();
    }
    if options.dry_run {
        params = params.dry_run();
    }
    let after = match api.patch(name, &params, &Patch::Apply(&object)).await {
        Ok(after) => after,
        // Fields only the old single manager holds are this workflow's own: take them over.
        Err(e) if !options.force && conflicts_only_with_legacy(&e) => {
            log(&format!(
                "{}: taking over fields from the former single field manager `{LEGACY_FIELD_MANAGER}` (force)",
                doc.reference()
            ));
            let forced = params.clone().force();
            api.patch(name, &forced, &Patch::Apply(&object)).await.map_err(|e| refused(e, "patch"))?
        }
        Err(e) => return Err(refused(e, "patch")),
    };
    if !options.dry_run {
        forget_legacy_manager(&api, &after, options.field_manager, &doc.reference(), log).await;
    }
    let change = match before {
        None => Change::Created,
        Some(before) if options.dry_run => {
            if same_content(&before, &after) {
                Change::Unchanged
            } else {
                Change::Changed
            }
        }
        Some(before) if before.metadata.resource_version == after.metadata.resource_version => {
            Change::Unchanged
        }
        Some(_) => Change::Changed,
    };
    let applied = Applied { reference: doc.reference(), namespace, change };
    log(&applied.to_string());
    Ok(applied)
}

/// A 409 whose every conflict is with the legacy `milepost` manager's `Apply` entry.
fn conflicts_only_with_legacy(err: &kube::Error) -> bool {
    let kube::Error::Api(status) = err else { return false };
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let legacy = format!("conflict with \"{LEGACY_FIELD_MANAGER}\"");
    status.code == 409
        && !causes.is_empty()
        && causes.iter().all(|c| c.reason == "FieldManagerConflict" && c.message == legacy)
}

/// Drops the legacy manager's `Apply` entry from `managedFields`, as kubectl's upgrade from
/// client-side apply edits them: a JSON patch that first tests the resourceVersion, so a
/// write in between wins and the next apply tries again. The fields stay in the object;
/// they are owned by the step managers that apply them (or by nobody). Failing here does not
/// fail the step: the object is applied, and the entry is only bookkeeping.
async fn forget_legacy_manager(
    api: &Api<DynamicObject>,
    after: &DynamicObject,
    manager: &str,
    reference: &str,
    log: &mut (dyn FnMut(&str) + Send),
) {
    let entries = after.metadata.managed_fields.as_deref().unwrap_or_default();
    let is_legacy = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(LEGACY_FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or("").is_empty()
    };
    if !entries.iter().any(|e| is_legacy(&e)) {
        return;
    }
    let (Some(name), Some(version)) =
        (after.metadata.name.as_deref(), after.metadata.resource_version.as_deref())
    else {
        return;
    };
    let kept: Vec<_> = entries.iter().filter(|e| !is_legacy(e)).collect();
    // Only once the step's own Apply entry is there to own what it applied: clearing the
    // list (`[{}]`) would hand every field to `before-first-apply` on the next apply, and
    // those could then never be pruned nor changed without a conflict.
    let own = kept.iter().any(|e| {
        e.manager.as_deref() == Some(manager)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or("").is_empty()
    });
    if !own {
        return;
    }
    let kept = serde_json::json!(kept);
    let ops = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/metadata/managedFields", "value": kept},
    ]);
    let patch = match serde_json::from_value(ops) {
        Ok(p) => Patch::Json::<()>(p),
        Err(_) => return,
    };
    match api.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => log(&format!("{reference}: dropped the former single field manager `{LEGACY_FIELD_MANAGER}`")),
        Err(e) => log(&format!(
            "{reference}: could not drop the former field manager `{LEGACY_FIELD_MANAGER}` ({}); the next apply tries again",
            super::causes(&e)
        )),
    }
}

/// Polls discovery until the kind is served (a CRD becoming established).
async fn wait_for_kind(
    cluster: &Cluster,
    gvk: &kube::core::GroupVersionKind,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(kube::discovery::ApiResource, kube::discovery::ApiCapabilities), String> {
    log(&format!("waiting for {} to be served (its CRD was just applied)", gvk.api_version()));
    let deadline = Instant::now() + CRD_ESTABLISH;
    loop {
        match cluster.resolve(gvk).await {
            Ok(found) => return Ok(found),
            Err(reason) if Instant::now() >= deadline => {
                return Err(format!("{reason} (waited {}s for its CRD)", CRD_ESTABLISH.as_secs()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A dry run bumps nothing, so compare what a person would: everything but bookkeeping.
fn same_content(before: &DynamicObject, after: &DynamicObject) -> bool {
    let strip = |o: &DynamicObject| {
        let mut value = serde_json::to_value(o).unwrap_or_default();
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for key in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"] {
                meta.remove(key);
            }
        }
        value
    };
    strip(before) == strip(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn field_managers_of_names_with_slashes_or_control_characters_never_collide() {
        // `a/b` + `c` and `a` + `b/c` would both be `milepost/a/b/c`.
        let one = field_manager("a/b", "c");
        let two = field_manager("a", "b/c");
        assert_ne!(one, two);
        for name in [one, two, field_manager("tab\there", "s"), field_manager("n", "new\nline")] {
            assert!(name.len() <= FIELD_MANAGER_MAX && !name.chars().any(char::is_control), "{name:?}");
            assert_eq!(name.matches('/').count(), 2, "{name}");
        }
        assert_eq!(field_manager("k8s-infra", "namespaces"), "milepost/k8s-infra/namespaces");
    }

    #[test]
    fn namespaces_and_crds_go_first_the_rest_keeps_file_order() {
        let text = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n";
        let docs = super::super::manifest::parse(Path::new("m.yaml"), text).unwrap();
        let order: Vec<&str> = apply_order(&docs).iter().map(|d| d.kind()).collect();
        assert_eq!(order, ["Namespace", "CustomResourceDefinition", "Widget", "ConfigMap"]);
    }

    #[test]
    fn field_managers_are_per_step_and_fit_the_api_limit() {
        assert_eq!(field_manager("k8s-infra", "objects"), "milepost/k8s-infra/objects");
        let long = "n".repeat(200);
        let a = field_manager(&long, "objects");
        let b = field_manager(&long, "objects2");
        assert_eq!(a.len(), FIELD_MANAGER_MAX);
        assert_ne!(a, b, "cut names stay distinct");
        assert!(a.starts_with("milepost/nnn") && a.contains("/objects-"), "the step stays readable: {a}");
        let both = field_manager(&"n".repeat(200), &"s".repeat(200));
        assert_eq!(both.len(), FIELD_MANAGER_MAX);
        assert!(both.contains(&format!("/{}", "s".repeat(50))), "{both}");
        let wide = "é".repeat(100);
        let c = field_manager(&wide, "s");
        assert!(c.len() <= FIELD_MANAGER_MAX && c.is_char_boundary(c.len()), "{c}");
        assert_eq!(field_manager(&"x".repeat(117), "s").len(), 128, "128 fits as is");
    }

    #[test]
    fn a_log_line_says_what_happened_to_which_object() {
        let a = Applied {
            reference: "configmap/c".into(),
            namespace: Some("apps".into()),
            change: Change::Created,
        };
        assert_eq!(a.to_string(), "created   configmap/c -n apps");
        let b = Applied { reference: "namespace/apps".into(), namespace: None, change: Change::Unchanged };
        assert_eq!(b.to_string(), "unchanged namespace/apps");
    }
}
