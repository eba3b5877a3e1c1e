//! Kubernetes, spoken directly through the kube crate: the connection (kubeconfig or
//! in-cluster), API discovery, server-side apply and watch-based waits. Every error names
//! what was refused and where, in the API server's own words.

pub mod apply;
pub mod manifest;
pub mod wait;

use std::collections::HashMap;
use std::time::Duration;

use kube::config::{KubeConfigOptions, KubeconfigError};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use tokio::sync::Mutex;

/// How long preflight waits for the API server to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to connect: the workflow's `kubernetes` block, overridden by `--context`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A connected cluster, shared by every Kubernetes step of a run.
pub struct Cluster {
    pub client: Client,
    /// Where namespaced objects without a namespace go: the workflow's, else the context's.
    pub namespace: String,
    /// The API server's URL, for messages and a run's identity.
    pub server: String,
    /// SHA-256 of the certificate authorities the kubeconfig trusts for it (DER, in order),
    /// when it names any: the same URL on another cluster (a rebuilt kind cluster, a
    /// port-forward) is another identity.
    pub ca_fingerprint: Option<String>,
    /// Kinds resolved so far; only successes are kept, so a CRD applied later is found.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    /// Every group's resources that answered, for `wait kind/name` where only the kind is
    /// known, and the groups that did not (an aggregated API not ready yet).
    discovery: Mutex<Option<(Vec<kube::discovery::ApiGroup>, Vec<String>)>>,
}

/// Why there is no cluster to talk to.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no Kubernetes cluster is configured: KUBECONFIG is not set, ~/.kube/config does not exist, \
         and milepost is not running in a pod; point KUBECONFIG at a kubeconfig \
         (for kind: `kind export kubeconfig`)"
    )]
    NotConfigured,
    #[error("the kubeconfig cannot be used: {0}")]
    Kubeconfig(String),
    #[error(
        "cannot reach the API server at {server}: {reason}; is the cluster running and the context right?"
    )]
    Unreachable { server: String, reason: String },
    #[error(
        "the API server at {server} rejected the credentials (401 Unauthorized){context}; \
         refresh them (for example `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`)"
    )]
    Unauthorized { server: String, context: String },
    #[error("the API server at {server} answered {code}: {message}")]
    Refused { server: String, code: u16, message: String },
}

/// Every cause in an error chain, outermost first, without repeats: "connection refused"
/// usually sits three levels down.
pub fn causes(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Why a kubeconfig could not be loaded, with file paths as written: kube formats them with
/// `{:?}` inside quotes (`from '"/tmp/x"'`), so those variants are worded here.
fn kubeconfig_reason(err: &KubeconfigError) -> String {
    use kube::config::LoadDataError;
    let file = |what: &str, err: &LoadDataError| match err {
        LoadDataError::ReadFile(io, path) => {
            Some(format!("failed to read {what} '{}': {io}", path.display()))
        }
        _ => None,
    };
    let worded = match err {
        KubeconfigError::ReadConfig(io, path) => {
            Some(format!("failed to read kubeconfig from '{}': {io}", path.display()))
        }
        KubeconfigError::LoadCertificateAuthority(e) => file("the certificate authority", e),
        KubeconfigError::LoadClientCertificate(e) => file("the client certificate", e),
        KubeconfigError::LoadClientKey(e) => file("the client key", e),
        _ => None,
    };
    worded.unwrap_or_else(|| causes(err))
}

fn kubeconfig_present() -> bool {
    let from_env = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    let home = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".kube/config").exists())
        .unwrap_or(false);
    from_env || home
}

/// Loads the configuration and asks the API server for its version, once, before any step.
///
/// # Errors
/// No configuration, an unusable kubeconfig, an unreachable server, rejected credentials.
pub async fn connect(settings: &Settings) -> Result<Cluster, ConnectError> {
    let options = KubeConfigOptions { context: settings.context.clone(), ..KubeConfigOptions::default() };
    let mut config = if kubeconfig_present() || settings.context.is_some() {
        Config::from_kubeconfig(&options).await.map_err(|e| match e {
            KubeconfigError::LoadContext(name) => ConnectError::Kubeconfig(format!(
                "the context `{name}` is not in it (kubectl config get-contexts)"
            )),
            other => ConnectError::Kubeconfig(kubeconfig_reason(&other)),
        })?
    } else {
        Config::incluster().map_err(|_| ConnectError::NotConfigured)?
    };
    // kube's own retry of 429/503/504 (15 times, backing off towards minutes) would hide
    // inside a step's timeout and a wait's window; milepost decides retries itself (a
    // step's `retries`, a probe's polling, [`may_heal`]).
    config.default_retry = false;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let ca_fingerprint = config.root_cert.as_ref().filter(|certs| !certs.is_empty()).map(|certs| {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for cert in certs {
            h.update(cert);
        }
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    });
    let namespace = settings.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)
        .map_err(|e| ConnectError::Unreachable { server: server.clone(), reason: causes(&e) })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Err(_) => {
            return Err(ConnectError::Unreachable {
                server,
                reason: format!("no answer in {}s", CONNECT_TIMEOUT.as_secs()),
            })
        }
        Ok(Err(kube::Error::Api(status))) if status.code == 401 => {
            let context =
                settings.context.as_ref().map(|c| format!(" for context `{c}`")).unwrap_or_default();
            return Err(ConnectError::Unauthorized { server, context });
        }
        Ok(Err(kube::Error::Api(status))) => {
            return Err(ConnectError::Refused { server, code: status.code, message: status.message.clone() })
        }
        Ok(Err(other)) => return Err(ConnectError::Unreachable { server, reason: causes(&other) }),
        Ok(Ok(_)) => {}
    }
    Ok(Cluster {
        client,
        namespace,
        server,
        ca_fingerprint,
        kinds: Mutex::new(HashMap::new()),
        discovery: Mutex::new(None),
    })
}

impl Cluster {
    /// The resource behind an apiVersion and kind, through discovery of that group version.
    ///
    /// # Errors
    /// A message saying which group/version or kind the server does not serve.
    pub async fn resolve(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities), String> {
        if let Some(found) = self.kinds.lock().await.get(gvk) {
            return Ok(found.clone());
        }
        let api_version = gvk.api_version();
        let found = kube::discovery::pinned_kind(&self.client, gvk).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => format!(
                "the API server does not serve {api_version} (404 from discovery): \
                 is the CRD or API group for {} installed?",
                gvk.kind
            ),
            kube::Error::Discovery(_) => format!(
                "the API server serves {api_version} but not the kind {}: check the spelling and apiVersion",
                gvk.kind
            ),
            other => describe(&other, "discover", &gvk.kind, None),
        })?;
        self.kinds.lock().await.insert(gvk.clone(), found.clone());
        Ok(found)
    }

    /// The resource a person means by `deployment`, `deployments`, `Deployment` or
    /// `deployment.apps`, searched across every group the server serves.
    ///
    /// # Errors
    /// Discovery failing, or no kind of that name.
    pub async fn find_kind(&self, name: &str) -> Result<(ApiResource, ApiCapabilities), String> {
        if let Some(found) = self.find_kind_once(name, false).await? {
            return Ok(found);
        }
        // A CRD applied since the last discovery: look again before giving up.
        self.find_kind_once(name, true).await?.ok_or_else(|| {
            format!("the API server has no kind `{name}` in any group; write it as kind/name, e.g. deployment/istiod")
        })
    }

    async fn find_kind_once(
        &self,
        name: &str,
        refresh: bool,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, String> {
        let mut cached = self.discovery.lock().await;
        if cached.is_none() || refresh {
            *cached = Some(self.discover_groups().await?);
        }
        let (groups, unreachable) = cached.as_ref().expect("filled above");
        let wanted = name.to_lowercase();
        let (kind, group) = match wanted.split_once('.') {
            Some((k, g)) => (k.to_string(), Some(g.to_string())),
            None => (wanted.clone(), None),
        };
        if let Some(missing) =
            unreachable.iter().find(|u| group.as_deref().is_some_and(|g| u.starts_with(&format!("{g}:"))))
        {
            return Err(format!("the API server could not list the kinds of group {missing}"));
        }
        let mut matches = Vec::new();
        for api_group in groups {
            if group.as_deref().is_some_and(|g| g != api_group.name()) {
                continue;
            }
            for (ar, caps) in api_group.recommended_resources() {
                if ar.kind.to_lowercase() == kind || ar.plural == kind {
                    matches.push((ar, caps));
                }
            }
        }
        // The core group first, then by group name: stable, and as kubectl prefers.
        matches.sort_by(|a, b| (!a.0.group.is_empty(), &a.0.group).cmp(&(!b.0.group.is_empty(), &b.0.group)));
        Ok(matches.into_iter().next())
    }
}

impl Cluster {
    /// Every API group's resources, one group at a time: kube's `Discovery::run` fails
    /// whole when one aggregated API does not answer (metrics-server starting, on a fresh
    /// k3d or while a module installs it), and that must not hide `apps` or a CRD's group.
    async fn discover_groups(&self) -> Result<(Vec<kube::discovery::ApiGroup>, Vec<String>), String> {
        let listed =
            self.client.list_api_groups().await.map_err(|e| describe(&e, "discover", "API groups", None))?;
        let names = std::iter::once(kube::discovery::ApiGroup::CORE_GROUP.to_string())
            .chain(listed.groups.into_iter().map(|g| g.name));
        let mut groups = Vec::new();
        let mut unreachable = Vec::new();
        for name in names {
            match kube::discovery::group(&self.client, &name).await {
                Ok(group) => groups.push(group),
                Err(e) => unreachable.push(format!("{name}: {e}")),
            }
        }
        if groups.is_empty() {
            return Err(format!("no API group could be listed: {}", unreachable.join("; ")));
        }
        Ok((groups, unreachable))
    }
}

/// Whether sending the same request again could get another answer. A conflict (409) or an
/// invalid object (422) is about the request itself: only a change to it (or `force`) helps.
/// A 403 or 404 can heal while the rollout goes on (a Role granted, a CRD served), and
/// connection errors and 5xx are the usual transient ones.
///
/// A 500 without a reason is not transient either: it is how the server refuses a manifest
/// whose field sits at the wrong level (`failed to create typed patch object … field not
/// declared in schema`), every time.
pub fn may_heal(err: &kube::Error) -> bool {
    !matches!(err, kube::Error::Api(status)
        if status.code == 409 || status.code == 422 || is_schema_error(status))
}

/// The 500 server-side apply answers when the typed object cannot be built from the
/// manifest: no reason, no details.
fn is_schema_error(status: &kube::core::Status) -> bool {
    // Every error the server does not classify has an empty reason, etcd's transient ones
    // (`etcdserver: request timed out`) too: only the typed-patch failure is known to stay.
    status.code == 500
        && (status.message.contains("failed to create typed patch object")
            || status.message.contains("field not declared in schema"))
}

/// The verb RBAC refused, as the server's message names it (`… cannot create resource …`):
/// an apply of a missing object is refused as `create`, a watcher's first list as `list`.
fn refused_verb(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    rest.starts_with("resource").then_some(verb)
}

/// An API error as a person can act on it: what was refused, where, and the server's words.
pub fn describe(err: &kube::Error, verb: &str, what: &str, namespace: Option<&str>) -> String {
    let place = namespace.map(|n| format!(" in namespace `{n}`")).unwrap_or_default();
    match err {
        kube::Error::Api(status) => match status.code {
            403 => match refused_verb(&status.message) {
                Some(refused) => format!(
                    "forbidden (403): RBAC does not allow `{refused}` on {what}{place} for this user; \
                     grant it in a Role or ClusterRole. The API server said: {}",
                    status.message
                ),
                // Not RBAC: a namespace being deleted, an admission webhook, …
                None => format!("forbidden (403): {verb} {what}{place}: {}", status.message),
            },
            404 => format!("not found (404): {what}{place}: {}", status.message),
            409 => format!(
                "conflict (409) on {what}{place}: {}. Another field manager owns these fields; \
                 set force=#true on the step to take them over, or change the other owner",
                status.message
            ),
            422 => format!("invalid (422): the API server rejected {what}{place}: {}", status.message),
            _ if is_schema_error(status) => format!(
                "{verb} {what}{place} failed ({}): {}; a field of the manifest is not where the \
                 kind's schema has it (check the indentation)",
                status.code, status.message
            ),
            code if status.reason.is_empty() => {
                format!("{verb} {what}{place} failed ({code}): {}", status.message)
            }
            code => format!("{verb} {what}{place} failed ({code} {}): {}", status.reason, status.message),
        },
        other => format!("{verb} {what}{place} failed: {}", causes(other)),
    }
}

/// `v1` and `apps/v1` as group and version.
pub fn group_version_kind(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

pub fn is_namespaced(caps: &ApiCapabilities) -> bool {
    caps.scope == Scope::Namespaced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let text =
            serde_json::json!({"status": "Failure", "message": message, "reason": reason, "code": code});
        kube::Error::Api(Box::new(serde_json::from_value(text).unwrap()))
    }

    /// Issue 15 item 7: kube writes `'"/tmp/no such/config"'`; the path is shown once quoted.
    #[test]
    fn kubeconfig_paths_are_quoted_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let path = std::path::PathBuf::from("/tmp/no such/config");
        let read = KubeconfigError::ReadConfig(missing(), path.clone());
        let text = ConnectError::Kubeconfig(kubeconfig_reason(&read)).to_string();
        assert_eq!(text, "the kubeconfig cannot be used: failed to read kubeconfig from '/tmp/no such/config': entity not found");
        let key = KubeconfigError::LoadClientKey(kube::config::LoadDataError::ReadFile(missing(), path));
        assert_eq!(
            kubeconfig_reason(&key),
            "failed to read the client key '/tmp/no such/config': entity not found"
        );
        assert!(!kubeconfig_reason(&KubeconfigError::MissingClusterUrl).contains('"'));
    }

    #[test]
    fn only_the_typed_patch_500_is_final_other_reasonless_500s_heal() {
        let schema = "failed to create typed patch object (/gadgets.example.com; apiextensions.k8s.io/v1, \
                      Kind=CustomResourceDefinition): .versions: field not declared in schema";
        assert!(!may_heal(&status(500, "", schema)));
        // etcd's transient failures come back as 500 with no reason too.
        assert!(may_heal(&status(500, "", "etcdserver: request timed out")));
        assert!(may_heal(&status(500, "", "etcdserver: leader changed")));
        assert!(!may_heal(&status(409, "Conflict", "Apply failed with 1 conflict")));
    }

    #[test]
    fn the_refused_verb_is_read_from_the_servers_message() {
        let m = "configmaps \"x\" is forbidden: User \"limited\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"apps\"";
        assert_eq!(refused_verb(m), Some("create"));
        assert_eq!(
            refused_verb(
                "unable to create new content in namespace doomed-ns because it is being terminated"
            ),
            None
        );
    }
}
