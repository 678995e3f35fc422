//! The chart's identities in a bed without real nodes: its ServiceAccounts, RBAC and
//! node-scope admission policy as `helm template` renders them, applied the way the
//! person installing the chart would; and tokens for them from the API server's
//! TokenRequest API, the way a kubelet gets them for a pod. An agent's token is bound to
//! a pod on its node, so the API server puts that node into the request's user info,
//! where the chart's policy reads it. The product never runs as the admin.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Pod, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
};
use serde_json::json;

use crate::{
    ControlPlane, ControlPlaneError, binaries, cluster, control_plane::SYSTEM_NAMESPACE,
    real_bed::chart_dir,
};

/// The release name the identities are rendered with (as the real-node bed installs).
pub const RELEASE: &str = "eni";
/// What the chart's ServiceAccounts are called (its default values).
const OPERATOR_SA: &str = "eni-operator";
const AGENT_SA: &str = "eni-agent";
/// The kinds of the chart that make up identities and their limits.
const IDENTITY_KINDS: [&str; 7] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];
/// Kinds among them that live in a namespace.
const NAMESPACED: [&str; 3] = ["ServiceAccount", "Role", "RoleBinding"];
/// Tokens outlive any test run; a real kubelet would refresh them.
const TOKEN_SECONDS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Binary(#[from] binaries::BinaryError),
    #[error("helm template: {0}")]
    Helm(String),
    #[error("the chart's manifest: {0}")]
    Manifest(String),
    #[error(transparent)]
    Apply(#[from] cluster::ClusterError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    #[error("the TokenRequest for {0} came back without a token")]
    NoToken(&'static str),
}

/// A product identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who<'a> {
    /// The operator's ServiceAccount.
    Operator,
    /// The agent's ServiceAccount, as the agent pod on this node holds it.
    Agent(&'a str),
    /// The agent's ServiceAccount with a token bound to no pod (as a long-lived Secret
    /// token would be): it carries no node.
    UnboundAgent,
}

impl Who<'_> {
    fn service_account(self) -> &'static str {
        match self {
            Who::Operator => OPERATOR_SA,
            Who::Agent(_) | Who::UnboundAgent => AGENT_SA,
        }
    }

    /// Where its kubeconfig is written in the control plane's directory.
    pub fn kubeconfig_path(self, cp: &ControlPlane) -> PathBuf {
        match self {
            Who::Operator => cp.dir().join("kubeconfig-operator"),
            Who::Agent(node) => cp.dir().join(format!("kubeconfig-agent-{node}")),
            Who::UnboundAgent => cp.dir().join("kubeconfig-agent-unbound"),
        }
    }
}

/// Renders the chart with `helm template` and applies its identity objects as `admin`.
pub async fn install(admin: &Client, scratch: &Path) -> Result<(), IdentityError> {
    let mut cmd = Command::new(binaries::helm()?);
    cmd.arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .args(["--namespace", SYSTEM_NAMESPACE])
        // helm keeps nothing for `template`, but must not touch the user's helm home.
        .env("HELM_CONFIG_HOME", scratch.join("helm/config"))
        .env("HELM_CACHE_HOME", scratch.join("helm/cache"))
        .env("HELM_DATA_HOME", scratch.join("helm/data"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| IdentityError::Helm(e.to_string()))?
        .map_err(|e| IdentityError::Helm(e.to_string()))?;
    if !out.status.success() {
        return Err(IdentityError::Helm(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let rendered = String::from_utf8_lossy(&out.stdout);
    let objects = identity_objects(&rendered)?;
    if objects.is_empty() {
        return Err(IdentityError::Manifest(
            "helm template rendered no identity objects".into(),
        ));
    }
    for object in objects {
        let yaml =
            serde_yaml::to_string(&object).map_err(|e| IdentityError::Manifest(e.to_string()))?;
        cluster::apply_yaml(admin, &yaml).await?;
    }
    Ok(())
}

/// The identity objects of a rendered chart, each with its namespace.
fn identity_objects(rendered: &str) -> Result<Vec<DynamicObject>, IdentityError> {
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| IdentityError::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| IdentityError::Manifest(e.to_string()))?;
        let kind = object
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        if !IDENTITY_KINDS.contains(&kind.as_str()) {
            continue;
        }
        if NAMESPACED.contains(&kind.as_str()) && object.metadata.namespace.is_none() {
            object.metadata.namespace = Some(SYSTEM_NAMESPACE.to_owned());
        }
        found.push(object);
    }
    Ok(found)
}

/// A token of `who` from the TokenRequest API; an agent's is bound to its node's agent
/// pod (made here when missing, host network, so no pod network is asked for it).
pub async fn token(admin: &Client, who: Who<'_>) -> Result<String, IdentityError> {
    let bound = match who {
        Who::Operator | Who::UnboundAgent => None,
        Who::Agent(node) => Some(agent_pod(admin, node).await?),
    };
    let mut spec = json!({"audiences": [], "expirationSeconds": TOKEN_SECONDS});
    if let Some(pod) = bound {
        spec["boundObjectRef"] = json!({
            "apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name, "uid": pod.metadata.uid,
        });
    }
    let request: TokenRequest =
        serde_json::from_value(json!({ "spec": spec })).map_err(kube::Error::SerdeError)?;
    let sa = who.service_account();
    let issued: TokenRequest = Api::<ServiceAccount>::namespaced(admin.clone(), SYSTEM_NAMESPACE)
        .create_subresource("token", sa, &PostParams::default(), &request)
        .await?;
    issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or(IdentityError::NoToken(sa))
}

/// The agent pod of `node` that its token is bound to: the pod a DaemonSet would run.
async fn agent_pod(admin: &Client, node: &str) -> Result<Pod, IdentityError> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), SYSTEM_NAMESPACE);
    let name = format!("eni-agent-{node}");
    if let Some(pod) = pods.get_opt(&name).await? {
        return Ok(pod);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "eni-operator", "app.kubernetes.io/component": "agent"},
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": AGENT_SA,
            "hostNetwork": true,
            "containers": [{"name": "agent", "image": "localhost/eni-agent"}],
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    // Just after the chart is installed, the API server refuses every pod create until
    // the trunk-scheduling policy's parameter kind (ENIPool) is synced, host-network
    // pods too: a DaemonSet controller would retry, and so does this.
    let mut attempts = 0;
    loop {
        match pods.create(&PostParams::default(), &pod).await {
            Err(e) if admission_not_synced(&e) && attempts < 40 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The API server's answer to a pod create while an admission policy's parameter kind
/// is not yet synced (just after the chart is installed): try again shortly.
pub fn admission_not_synced(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.message.contains("not yet synced"))
}

/// Writes a kubeconfig for `who` with a fresh token; returns its path.
pub async fn kubeconfig(
    cp: &ControlPlane,
    admin: &Client,
    who: Who<'_>,
) -> Result<PathBuf, IdentityError> {
    let token = token(admin, who).await?;
    let path = who.kubeconfig_path(cp);
    cp.write_token_kubeconfig(&path, who.service_account(), &token)?;
    Ok(path)
}

/// A client authenticated as `who` with a fresh token.
pub async fn client(
    cp: &ControlPlane,
    admin: &Client,
    who: Who<'_>,
) -> Result<Client, IdentityError> {
    let token = token(admin, who).await?;
    Ok(cp.token_client(who.service_account(), &token).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identity_objects_are_kept_and_namespaced() {
        let rendered = "---
# Source: a comment only
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: eni-agent}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: eni-agent, namespace: eni-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: eni-agent}
rules: []
";
        let objects = identity_objects(rendered).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| {
                (
                    o.types.as_ref().unwrap().kind.as_str(),
                    o.metadata.namespace.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ServiceAccount", Some(SYSTEM_NAMESPACE)),
                ("ClusterRole", None)
            ]
        );
    }
}
