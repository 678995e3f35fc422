//! Request handling: what ADD, DEL, CHECK, GC and STATUS do on the node.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eni_crds::{PodNetwork, PodNetworkPhase, PodNetworkStatus};
use tracing::Instrument;

use crate::dataplane::{PodRequest, UnwireRequest, WiredPod};
use crate::protocol::{
    Attachment, AttachmentKey, AttachmentResult, ErrorReply, GcRequest, Interface, IpConfig,
    Request, Response, Route, codes,
};

use super::cache::{LookupError, PodNetworkCache};
use super::kube::StatusWriter;
use super::metrics::Metrics;
use super::state::{Record, StateDir, StateError};
use super::wiring::Wiring;

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

/// State dir I/O (an fsync per save) off the runtime's threads, which other requests
/// need meanwhile.
async fn blocking<T: Send + 'static>(
    io: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, ErrorReply> {
    match tokio::task::spawn_blocking(io).await {
        Ok(result) => result.map_err(|e| reply(codes::IO_FAILURE, e.to_string())),
        Err(e) => Err(reply(codes::IO_FAILURE, format!("state dir task: {e}"))),
    }
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
        for (feature, available) in wiring.features().named() {
            metrics.set_feature(feature, available);
            if available {
                tracing::info!(feature, "kernel feature available");
            } else {
                tracing::warn!(
                    feature,
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
        let record = Record {
            request: PodRequest {
                container_id: a.container_id.clone(),
                netns_path: PathBuf::from(netns),
                ifname: a.ifname.clone(),
                mode: pn.spec.mode,
                allocation: pn.spec.allocation.clone(),
                bandwidth: a.bandwidth,
            },
            network: a.network.clone(),
            pod: pod.clone(),
        };
        let refusal = self
            .wiring
            .features()
            .refusal(pn.spec.mode, &pn.spec.allocation);
        if let Some(why) = refusal {
            let msg = format!(
                "cannot wire pod {pod} on node {}: {why}",
                self.config.node_name
            );
            self.write_failed(&pn, &a, &msg).await;
            return Err(reply(codes::UNSUPPORTED_MODE, msg));
        }
        self.unwire_stale_sandboxes(&record).await?;
        // Record before wiring: if the agent dies half-way, DEL still finds what to undo.
        let (state, saved) = (self.state.clone(), record.clone());
        blocking(move || state.save(&saved)).await?;
        // The span puts the pod on the dataplane's own log lines.
        let wiring = self
            .wiring
            .wire(&record.request)
            .instrument(tracing::info_span!("wire", pod = %pod));
        let wired = match wiring.await {
            Ok(wired) => wired,
            Err(e) => {
                self.metrics.wiring_error("ADD");
                let code = if e.feature_missing().is_some() {
                    codes::UNSUPPORTED_MODE
                } else {
                    codes::WIRING_FAILED
                };
                let msg = format!("wiring pod {pod} failed: {e}");
                self.write_failed(&pn, &a, &msg).await;
                return Err(reply(code, msg));
            }
        };
        self.write_status(
            &pn,
            PodNetworkStatus {
                phase: Some(PodNetworkPhase::Ready),
                container_id: Some(a.container_id.clone()),
                pod_interface: Some(wired.pod_ifname.clone()),
                host_interface: Some(wired.host_ifname.clone()),
                conditions: Vec::new(),
                message: None,
            },
        )
        .await;
        tracing::info!(pod = %pod, container = a.container_id, address = %wired.address, "pod wired");
        Ok(to_result(&record.request, wired))
    }

    /// A pod gets a new sandbox (container id) when its old one died without a DEL; the
    /// old sandbox's wiring of the same address must go first, or the pod would be
    /// wired twice.
    async fn unwire_stale_sandboxes(&self, new: &Record) -> Result<(), ErrorReply> {
        for id in self.state.other_sandboxes(new) {
            let state = self.state.clone();
            let Some(old) = blocking(move || state.load(&id)).await? else {
                continue;
            };
            tracing::info!(pod = %new.pod, old = old.request.container_id, new = new.request.container_id, "removing wiring of a previous sandbox");
            self.unwire(&UnwireRequest::of(&old.request), "ADD").await?;
        }
        Ok(())
    }

    async fn unwire(
        &self,
        request: &UnwireRequest,
        command: &'static str,
    ) -> Result<(), ErrorReply> {
        if let Err(e) = self.wiring.unwire(request).await {
            self.metrics.wiring_error(command);
            return Err(reply(
                codes::WIRING_FAILED,
                format!(
                    "removing the wiring of container {} failed: {e}",
                    request.container_id
                ),
            ));
        }
        let (state, id) = (self.state.clone(), request.container_id.clone());
        blocking(move || state.remove(&id)).await
    }

    async fn del(&self, a: Attachment) -> Result<(), ErrorReply> {
        // What to undo: the state record, else the PodNetwork, else only what the
        // dataplane can find by container id. Anything already gone is fine.
        let from_state = self.state.load(&a.container_id).unwrap_or_else(|e| {
            tracing::warn!(error = %e, container = a.container_id, "state record unreadable; unwiring by container id");
            None
        });
        let address = match from_state {
            Some(record) => Some(record.request.allocation.address),
            None => a
                .pod
                .as_ref()
                .and_then(|pod| self.cache.lookup(pod).ok())
                .map(|pn| pn.spec.allocation.address),
        };
        let request = UnwireRequest {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            netns_path: a
                .netns
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            address,
        };
        self.unwire(&request, "DEL").await?;
        tracing::info!(container = a.container_id, "pod unwired");
        Ok(())
    }

    async fn check(&self, a: Attachment) -> Result<(), ErrorReply> {
        let record = self
            .state
            .load(&a.container_id)
            .map_err(|e| reply(codes::IO_FAILURE, e.to_string()))?
            .ok_or_else(|| {
                reply(
                    codes::UNKNOWN_CONTAINER,
                    format!("container {} was not wired by this agent", a.container_id),
                )
            })?;
        if record.request.ifname != a.ifname {
            return Err(reply(
                codes::UNKNOWN_CONTAINER,
                format!(
                    "container {} was wired with interface {}, not {}",
                    a.container_id, record.request.ifname, a.ifname
                ),
            ));
        }
        let problem = match self.wiring.check(&record.request).await {
            Ok(differences) if differences.is_empty() => return Ok(()),
            Ok(differences) => differences.join("; "),
            Err(e) => e.to_string(),
        };
        self.metrics.wiring_error("CHECK");
        Err(reply(
            codes::CHECK_FAILED,
            format!(
                "pod {} is no longer wired as expected: {problem}",
                record.pod
            ),
        ))
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
            let request = &record.request;
            let key = AttachmentKey {
                container_id: request.container_id.clone(),
                ifname: request.ifname.clone(),
            };
            if record.network != gc.network || valid.contains(&key) {
                // Another network's attachment is not this GC's to judge.
                keep.insert(key.container_id);
                continue;
            }
            tracing::info!(container = request.container_id, pod = %record.pod, "GC: removing stale wiring");
            if let Err(e) = self.unwire(&UnwireRequest::of(request), "GC").await {
                failures.push(e.msg);
                keep.insert(key.container_id);
            }
        }
        // Then wiring the kernel has that no record explains (e.g. a wiped state dir).
        match self.wiring.gc(&keep).await {
            Ok(removed) => {
                for container in removed.into_iter().filter_map(|pod| pod.container_id) {
                    tracing::info!(container, "GC: removed wiring without a state record");
                }
            }
            Err(e) => {
                self.metrics.wiring_error("GC");
                failures.push(e.to_string());
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

/// The protocol result: the host interface first, then the pod interface that holds
/// the address, as reference plugins order them.
fn to_result(request: &PodRequest, wired: WiredPod) -> AttachmentResult {
    let interfaces = vec![
        Interface {
            name: wired.host_ifname,
            mac: Some(wired.host_mac.to_string()),
            sandbox: None,
        },
        Interface {
            name: wired.pod_ifname,
            mac: Some(wired.pod_mac.to_string()),
            sandbox: Some(request.netns_path.display().to_string()),
        },
    ];
    AttachmentResult {
        ips: vec![IpConfig {
            address: wired.address.to_string(),
            gateway: Some(wired.gateway.to_string()),
            interface: Some(interfaces.len() - 1),
        }],
        interfaces,
        routes: wired
            .routes
            .into_iter()
            .map(|route| Route {
                dst: route.destination.to_string(),
                gw: route.gateway.map(|g| g.to_string()),
            })
            .collect(),
    }
}
