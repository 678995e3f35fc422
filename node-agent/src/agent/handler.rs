//! Request handling: what ADD, DEL, CHECK, GC and STATUS do on the node.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eni_crds::{PodNetwork, PodNetworkPhase, PodNetworkStatus};

use crate::protocol::{
    Attachment, AttachmentKey, AttachmentResult, ErrorReply, GcRequest, Interface, IpConfig,
    Request, Response, codes,
};

use super::cache::{LookupError, PodNetworkCache};
use super::kube::StatusWriter;
use super::metrics::Metrics;
use super::state::StateDir;
use super::wiring::{PodWiring, Unwire, Wired, Wiring};

/// Settings of the request handler.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node; PodNetworks of other nodes are refused.
    pub node_name: String,
    /// How long ADD waits for the operator's allocation.
    pub allocation_timeout: Duration,
}

/// The node agent's request handler.
pub struct Agent<W, S> {
    config: AgentConfig,
    cache: PodNetworkCache,
    wiring: W,
    status: S,
    state: StateDir,
    metrics: Arc<Metrics>,
}

fn reply(code: u32, msg: impl Into<String>) -> ErrorReply {
    ErrorReply {
        code,
        msg: msg.into(),
        details: String::new(),
    }
}

impl<W: Wiring, S: StatusWriter> Agent<W, S> {
    pub fn new(
        config: AgentConfig,
        cache: PodNetworkCache,
        wiring: W,
        status: S,
        state: StateDir,
        metrics: Arc<Metrics>,
    ) -> Self {
        for feature in wiring.features() {
            metrics.set_feature(&feature.name, feature.available);
            if feature.available {
                tracing::info!(feature = feature.name, "kernel feature available");
            } else {
                tracing::warn!(
                    feature = feature.name,
                    "kernel feature missing; pods whose mode needs it will be refused"
                );
            }
        }
        Self {
            config,
            cache,
            wiring,
            status,
            state,
            metrics,
        }
    }

    /// Handles one request and records its metrics.
    pub async fn handle(&self, request: Request) -> Response {
        let started = Instant::now();
        let command = request.command();
        let outcome = match request {
            Request::Add(a) => self.add(a).await.map(Response::Added),
            Request::Del(a) => self.del(a).await.map(|()| Response::Done),
            Request::Check(a) => self.check(a).await.map(|()| Response::Done),
            Request::Gc(gc) => self.gc(gc).await.map(|()| Response::Done),
            Request::Status => self.status().map(|()| Response::Done),
        };
        let response = match outcome {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    command,
                    code = e.code,
                    msg = e.msg,
                    details = e.details,
                    "request failed"
                );
                Response::Failed(e)
            }
        };
        let code = match &response {
            Response::Failed(e) => Some(e.code),
            _ => None,
        };
        self.metrics
            .record_request(command, code, started.elapsed());
        response
    }

    async fn add(&self, a: Attachment) -> Result<AttachmentResult, ErrorReply> {
        let pod = a.pod.clone().ok_or_else(|| {
            reply(
                codes::INVALID_ENVIRONMENT,
                "ADD needs the pod (K8S_POD_NAMESPACE, K8S_POD_NAME in CNI_ARGS)",
            )
        })?;
        let netns = a
            .netns
            .clone()
            .ok_or_else(|| reply(codes::INVALID_ENVIRONMENT, "ADD needs CNI_NETNS"))?;
        let pn = self
            .cache
            .wait_for(&pod, self.config.allocation_timeout)
            .await
            .map_err(|e| match e {
                LookupError::NotAllocated { .. } | LookupError::OtherPod { .. } => {
                    reply(codes::TRY_AGAIN_LATER, e.to_string())
                }
            })?;
        if pn.spec.node_name != self.config.node_name {
            return Err(reply(
                codes::INVALID_CONFIG,
                format!(
                    "PodNetwork {pod} is for node {}, but this agent runs on {}",
                    pn.spec.node_name, self.config.node_name
                ),
            ));
        }
        let wiring = PodWiring {
            container_id: a.container_id.clone(),
            network: a.network.clone(),
            pod: pod.clone(),
            netns,
            ifname: a.ifname.clone(),
            mode: pn.spec.mode,
            allocation: pn.spec.allocation.clone(),
        };
        if let Some(why) = self.wiring.unsupported(pn.spec.mode, &pn.spec.allocation) {
            let msg = format!(
                "cannot wire pod {pod} on node {}: {why}",
                self.config.node_name
            );
            self.write_failed(&pn, &a, &msg).await;
            return Err(reply(codes::UNSUPPORTED_MODE, msg));
        }
        self.unwire_stale_sandboxes(&wiring).await?;
        // Record before wiring: if the agent dies half-way, DEL still finds what to undo.
        self.state
            .save(&wiring)
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))?;
        let wired = match self.wiring.wire(&wiring).await {
            Ok(wired) => wired,
            Err(e) => {
                self.metrics.wiring_error("ADD");
                let code = if e.unsupported {
                    codes::UNSUPPORTED_MODE
                } else {
                    codes::WIRING_FAILED
                };
                let msg = format!("wiring pod {pod} failed: {}", e.message);
                self.write_failed(&pn, &a, &msg).await;
                return Err(reply(code, msg));
            }
        };
        self.write_status(
            &pn,
            PodNetworkStatus {
                phase: Some(PodNetworkPhase::Ready),
                container_id: Some(a.container_id.clone()),
                pod_interface: Some(wired.pod_interface.name.clone()),
                host_interface: wired.host_interface.as_ref().map(|l| l.name.clone()),
                conditions: Vec::new(),
                message: None,
            },
        )
        .await;
        tracing::info!(pod = %pod, container = a.container_id, address = wired.address, "pod wired");
        Ok(to_result(&wiring, wired))
    }

    /// A pod gets a new sandbox (container id) when its old one died without a DEL; the
    /// old sandbox's wiring of the same address must go first, or the pod would be
    /// wired twice.
    async fn unwire_stale_sandboxes(&self, wiring: &PodWiring) -> Result<(), ErrorReply> {
        let records = self
            .state
            .list()
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))?;
        for old in records.into_iter().flatten() {
            let same_pod = old.pod.namespace == wiring.pod.namespace
                && old.pod.name == wiring.pod.name
                && old.network == wiring.network;
            if same_pod && old.container_id != wiring.container_id {
                tracing::info!(pod = %wiring.pod, old = old.container_id, new = wiring.container_id, "removing wiring of a previous sandbox");
                self.unwire_record(old, "ADD").await?;
            }
        }
        Ok(())
    }

    async fn unwire_record(&self, old: PodWiring, command: &'static str) -> Result<(), ErrorReply> {
        let unwire = Unwire {
            container_id: old.container_id.clone(),
            ifname: old.ifname.clone(),
            netns: Some(old.netns.clone()),
            wiring: Some(old),
        };
        self.unwire(&unwire, command).await
    }

    async fn unwire(&self, unwire: &Unwire, command: &'static str) -> Result<(), ErrorReply> {
        if let Err(e) = self.wiring.unwire(unwire).await {
            self.metrics.wiring_error(command);
            return Err(reply(
                codes::WIRING_FAILED,
                format!(
                    "removing the wiring of container {} failed: {}",
                    unwire.container_id, e.message
                ),
            ));
        }
        self.state
            .remove(&unwire.container_id)
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))
    }

    async fn del(&self, a: Attachment) -> Result<(), ErrorReply> {
        // What to undo: the state record, else the PodNetwork, else only what the
        // dataplane can find by container id. Anything already gone is fine.
        let from_state = self.state.load(&a.container_id).unwrap_or_else(|e| {
            tracing::warn!(error = %e, container = a.container_id, "state record unreadable; unwiring by container id");
            None
        });
        let wiring = from_state.or_else(|| {
            let pod = a.pod.as_ref()?;
            let pn = self.cache.lookup(pod).ok()?;
            Some(PodWiring {
                container_id: a.container_id.clone(),
                network: a.network.clone(),
                pod: pod.clone(),
                netns: a.netns.clone().unwrap_or_default(),
                ifname: a.ifname.clone(),
                mode: pn.spec.mode,
                allocation: pn.spec.allocation.clone(),
            })
        });
        let unwire = Unwire {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            netns: a.netns.clone(),
            wiring,
        };
        self.unwire(&unwire, "DEL").await?;
        tracing::info!(container = a.container_id, "pod unwired");
        Ok(())
    }

    async fn check(&self, a: Attachment) -> Result<(), ErrorReply> {
        let wiring = self
            .state
            .load(&a.container_id)
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))?
            .ok_or_else(|| {
                reply(
                    codes::UNKNOWN_CONTAINER,
                    format!("container {} was not wired by this agent", a.container_id),
                )
            })?;
        if wiring.ifname != a.ifname {
            return Err(reply(
                codes::UNKNOWN_CONTAINER,
                format!(
                    "container {} was wired with interface {}, not {}",
                    a.container_id, wiring.ifname, a.ifname
                ),
            ));
        }
        self.wiring.check(&wiring).await.map_err(|e| {
            self.metrics.wiring_error("CHECK");
            reply(
                codes::CHECK_FAILED,
                format!(
                    "pod {} is no longer wired as expected: {}",
                    wiring.pod, e.message
                ),
            )
        })
    }

    async fn gc(&self, gc: GcRequest) -> Result<(), ErrorReply> {
        let valid: HashSet<AttachmentKey> = gc.valid.into_iter().collect();
        let mut keep: HashSet<String> = valid.iter().map(|k| k.container_id.clone()).collect();
        let mut failures = Vec::new();
        let records = self
            .state
            .list()
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))?;
        for record in records {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let key = AttachmentKey {
                container_id: record.container_id.clone(),
                ifname: record.ifname.clone(),
            };
            if record.network != gc.network || valid.contains(&key) {
                // Another network's attachment is not this GC's to judge.
                keep.insert(record.container_id);
                continue;
            }
            tracing::info!(container = record.container_id, pod = %record.pod, "GC: removing stale wiring");
            let id = record.container_id.clone();
            if let Err(e) = self.unwire_record(record, "GC").await {
                failures.push(e.msg);
                keep.insert(id);
            }
        }
        // Then wiring the kernel has that no record explains (e.g. a wiped state dir).
        match self.wiring.gc(&keep).await {
            Ok(removed) => {
                for container in removed {
                    tracing::info!(container, "GC: removed wiring without a state record");
                }
            }
            Err(e) => {
                self.metrics.wiring_error("GC");
                failures.push(e.message);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ErrorReply {
                code: codes::WIRING_FAILED,
                msg: format!(
                    "GC could not remove all stale wiring ({} failure(s))",
                    failures.len()
                ),
                details: failures.join("; "),
            })
        }
    }

    fn status(&self) -> Result<(), ErrorReply> {
        if self.cache.is_synced() {
            Ok(())
        } else {
            Err(reply(
                codes::NOT_AVAILABLE,
                "eni-agent is starting: its PodNetwork cache has not synced with the API server yet",
            ))
        }
    }

    async fn write_failed(&self, pn: &PodNetwork, a: &Attachment, msg: &str) {
        self.write_status(
            pn,
            PodNetworkStatus {
                phase: Some(PodNetworkPhase::Failed),
                container_id: Some(a.container_id.clone()),
                message: Some(msg.to_string()),
                ..PodNetworkStatus::default()
            },
        )
        .await;
    }

    /// A failed status write does not fail the request: the pod's network is what the
    /// runtime waits for, and the status is an observation the next ADD rewrites.
    async fn write_status(&self, pn: &PodNetwork, status: PodNetworkStatus) {
        let namespace = pn.metadata.namespace.as_deref().unwrap_or_default();
        let name = pn.metadata.name.as_deref().unwrap_or_default();
        if let Err(error) = self.status.write_status(namespace, name, &status).await {
            self.metrics.status_write_errors.inc();
            tracing::warn!(%error, namespace, name, "writing PodNetwork status failed");
        }
    }
}

/// The protocol result: the host interface (if any) first, then the pod interface that
/// holds the address, as reference plugins order them.
fn to_result(wiring: &PodWiring, wired: Wired) -> AttachmentResult {
    let mut interfaces = Vec::new();
    if let Some(host) = wired.host_interface {
        interfaces.push(Interface {
            name: host.name,
            mac: host.mac,
            sandbox: None,
        });
    }
    interfaces.push(Interface {
        name: wired.pod_interface.name,
        mac: wired.pod_interface.mac,
        sandbox: Some(wiring.netns.clone()),
    });
    AttachmentResult {
        ips: vec![IpConfig {
            address: wired.address,
            gateway: Some(wired.gateway),
            interface: Some(interfaces.len() - 1),
        }],
        interfaces,
        routes: wired.routes,
    }
}
