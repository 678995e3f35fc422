//! The simulator engine: one request's path through auth, throttling, faults, latency
//! and the state machine, plus the admin operations. Independent of HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tracing::{debug, info};

use crate::behaviour::{CallClass, Fault, SimConfig, Throttle};
use crate::cloud::requests::{RegisterInstance, RegisteredInstance};
use crate::cloud::{Cloud, CloudState, Timing};
use crate::dataplane_view::DataplaneView;
use crate::ec2::{self, params::Params, xml::Xml};
use crate::ecs;
use crate::error::{CloudError, CloudResult, ErrorCode};
use crate::sigv4::{self, Credentials, RequestParts};

/// Per-action call counters (admin API).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounters {
    pub calls: u64,
    pub throttled: u64,
    /// Failed before any effect (injected server error).
    pub faulted: u64,
    /// Took effect, answered too late (injected timeout).
    pub timed_out: u64,
    pub errors: u64,
}

/// Which API a request speaks: EC2's Query API (SigV4, XML) or ECS's RPC-style OpenAPI
/// (ACS3 signature, JSON). Both drive the same cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Ec2,
    /// With the `x-acs-version` the request named.
    Ecs {
        version: &'static str,
    },
}

impl Api {
    fn is_known(self, action: &str) -> bool {
        match self {
            Self::Ec2 => ec2::is_known(action),
            Self::Ecs { version } => ecs::is_known(action, version),
        }
    }

    fn is_describe(self, action: &str) -> bool {
        match self {
            Self::Ec2 => ec2::is_describe(action),
            Self::Ecs { .. } => ecs::is_describe(action),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ec2 => "text/xml;charset=UTF-8",
            Self::Ecs { .. } => "application/json;charset=utf-8",
        }
    }
}

/// An answer: HTTP status and body (XML for EC2, JSON for ECS).
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: String,
}

/// State dump for leak checks.
#[derive(Serialize)]
pub struct StateDump<'a> {
    pub state: &'a CloudState,
    pub invariant_violations: Vec<String>,
}

pub struct Sim {
    cloud: Mutex<Cloud>,
    config: Mutex<SimConfig>,
    throttle: Mutex<Throttle>,
    counters: Mutex<BTreeMap<String, ActionCounters>>,
    rng: Mutex<StdRng>,
    /// Past states for describe lag, oldest first.
    snapshots: Mutex<VecDeque<(Instant, Arc<CloudState>)>>,
    view_tx: watch::Sender<DataplaneView>,
    /// Wakes the transition task when an attach or detach was started.
    transitions: Notify,
    credentials: Vec<Credentials>,
    verify_signatures: bool,
    request_seq: AtomicU64,
}

/// Mutex poisoning only follows a panic in another request; the data is still sound
/// (every mutation validates before it writes), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn timing_of(config: &SimConfig) -> Timing {
    Timing {
        attach: Duration::from_millis(config.attach_delay_ms),
        detach: Duration::from_millis(config.detach_delay_ms),
    }
}

impl Sim {
    pub fn new(
        mut cloud: Cloud,
        config: SimConfig,
        credentials: Vec<Credentials>,
        verify_signatures: bool,
        seed: u64,
    ) -> Arc<Self> {
        cloud.set_timing(timing_of(&config));
        let (view_tx, _) = watch::channel(cloud.dataplane_view());
        Arc::new(Self {
            cloud: Mutex::new(cloud),
            config: Mutex::new(config),
            throttle: Mutex::new(Throttle::default()),
            counters: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)),
            snapshots: Mutex::new(VecDeque::new()),
            view_tx,
            transitions: Notify::new(),
            credentials,
            verify_signatures,
            request_seq: AtomicU64::new(0),
        })
    }

    fn request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        let r: u64 = lock(&self.rng).random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            (r & 0xfff) as u16,
            (n & 0xfff) as u16,
            n
        )
    }

    fn count(&self, action: &str, f: impl FnOnce(&mut ActionCounters)) {
        f(lock(&self.counters).entry(action.to_owned()).or_default());
    }

    /// Serves one request of `api`; `action` is the `Action` parameter (EC2) or the
    /// `x-acs-action` header (ECS).
    pub async fn handle(
        &self,
        api: Api,
        req: &RequestParts<'_>,
        params: &Params,
        action: &str,
    ) -> ApiResponse {
        let request_id = self.request_id();
        match self.serve(api, req, params, action, &request_id).await {
            Ok(body) => ApiResponse { status: 200, body },
            Err(e) => {
                debug!(
                    action,
                    code = e.code.as_str(),
                    message = e.message,
                    "refused"
                );
                if api.is_known(action) {
                    self.count(action, |c| c.errors += 1);
                }
                let (status, body) = match api {
                    Api::Ec2 => (
                        e.code.http_status(),
                        Xml::error(e.code.as_str(), &e.message, &request_id),
                    ),
                    Api::Ecs { .. } => {
                        let host = self.cloud_region();
                        ecs::errors::render(&e, &request_id, &format!("ecs.{host}.aliyuncs.com"))
                    }
                };
                ApiResponse { status, body }
            }
        }
    }

    fn cloud_region(&self) -> String {
        lock(&self.cloud).state().vpc.region.clone()
    }

    async fn serve(
        &self,
        api: Api,
        req: &RequestParts<'_>,
        params: &Params,
        action: &str,
        request_id: &str,
    ) -> CloudResult<String> {
        match api {
            Api::Ec2 => sigv4::verify(req, &self.credentials, self.verify_signatures)?,
            Api::Ecs { .. } => ecs::verify(req, &self.credentials, self.verify_signatures)?,
        }
        if action.is_empty() {
            return Err(CloudError::new(
                ErrorCode::InvalidAction,
                "The request must contain the parameter Action",
            ));
        }
        match api {
            Api::Ec2 if !ec2::is_known(action) => return Err(ec2::unknown_action(action)),
            Api::Ecs { version } if !ecs::is_known(action, version) => {
                return Err(ecs::unknown_action(action, version));
            }
            _ => {}
        }
        self.count(action, |c| c.calls += 1);
        if api == Api::Ec2 {
            ec2::check_dry_run(params)?;
        }
        let config = lock(&self.config).clone();
        let class = CallClass::of(action);
        if !lock(&self.throttle).admit(action, &config.rate_limits, Instant::now()) {
            self.count(action, |c| c.throttled += 1);
            return Err(CloudError::new(
                ErrorCode::RequestLimitExceeded,
                "Request limit exceeded.",
            ));
        }
        let (fault, latency) = {
            let mut rng = lock(&self.rng);
            (
                config.faults.decide(action, &mut *rng),
                config.latency.of(class).sample(&mut *rng),
            )
        };
        if let Fault::Error(code) = fault {
            self.count(action, |c| c.faulted += 1);
            let message = match code {
                ErrorCode::ServiceUnavailable => {
                    "The request has failed due to a temporary failure of the server."
                }
                _ => "An internal error has occurred.",
            };
            return Err(CloudError::new(code, message));
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let result = self.execute(api, action, params, request_id, &config);
        if let Fault::Timeout(hold) = fault {
            // The effect happened; the answer comes too late for the client.
            self.count(action, |c| c.timed_out += 1);
            tokio::time::sleep(hold).await;
        }
        result
    }

    fn execute(
        &self,
        api: Api,
        action: &str,
        params: &Params,
        request_id: &str,
        config: &SimConfig,
    ) -> CloudResult<String> {
        let now = Instant::now();
        let mut cloud = lock(&self.cloud);
        if cloud.settle(now) {
            self.after_change(&cloud, now, config);
        }
        if api.is_describe(action) {
            let lagged = (config.describe_lag_ms > 0)
                .then(|| self.lagged_state(now, Duration::from_millis(config.describe_lag_ms)))
                .flatten();
            let state = lagged.as_deref().unwrap_or(cloud.state());
            return match api {
                Api::Ec2 => ec2::describe(action, params, state, cloud.catalog(), request_id),
                Api::Ecs { .. } => {
                    ecs::describe(action, params, state, cloud.catalog(), request_id)
                }
            };
        }
        if config.describe_lag_ms > 0 {
            let mut snaps = lock(&self.snapshots);
            if snaps.is_empty() {
                // The state before the first change is what lagged describes see first.
                snaps.push_back((now, Arc::new(cloud.state().clone())));
            }
        }
        let result = match api {
            Api::Ec2 => ec2::mutate(action, params, &mut cloud, now, request_id),
            Api::Ecs { .. } => ecs::mutate(action, params, &mut cloud, now, request_id),
        };
        if result.is_ok() {
            self.after_change(&cloud, now, config);
            if cloud.next_transition().is_some() {
                self.transitions.notify_one();
            }
        }
        result
    }

    /// Records a snapshot for describe lag and publishes the new dataplane view.
    fn after_change(&self, cloud: &Cloud, now: Instant, config: &SimConfig) {
        let mut snaps = lock(&self.snapshots);
        if config.describe_lag_ms > 0 {
            snaps.push_back((now, Arc::new(cloud.state().clone())));
            if let Some(cutoff) = now.checked_sub(Duration::from_millis(config.describe_lag_ms)) {
                while snaps.get(1).is_some_and(|(t, _)| *t <= cutoff) {
                    snaps.pop_front();
                }
            }
        } else {
            snaps.clear();
        }
        drop(snaps);
        let view = cloud.dataplane_view();
        self.view_tx.send_if_modified(|current| {
            if *current == view {
                false
            } else {
                *current = view;
                true
            }
        });
    }

    /// The newest state at least `lag` old, dropping older ones; `None` when nothing
    /// changed within the lag (the live state is then current enough).
    fn lagged_state(&self, now: Instant, lag: Duration) -> Option<Arc<CloudState>> {
        let mut snaps = lock(&self.snapshots);
        let cutoff = now.checked_sub(lag)?;
        while snaps.get(1).is_some_and(|(t, _)| *t <= cutoff) {
            snaps.pop_front();
        }
        snaps.front().map(|(_, state)| state.clone())
    }

    /// Completes attachments and detachments on time and publishes the view, until
    /// `shutdown` flips.
    pub async fn run_transitions(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = lock(&self.cloud).next_transition();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    let now = Instant::now();
                    let config = lock(&self.config).clone();
                    let mut cloud = lock(&self.cloud);
                    if cloud.settle(now) {
                        self.after_change(&cloud, now, &config);
                    }
                }
                _ = self.transitions.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    pub fn views(&self) -> watch::Receiver<DataplaneView> {
        self.view_tx.subscribe()
    }

    pub fn dataplane_view(&self) -> DataplaneView {
        self.view_tx.borrow().clone()
    }

    pub fn register_instance(&self, req: &RegisterInstance) -> CloudResult<RegisteredInstance> {
        let config = lock(&self.config).clone();
        let mut cloud = lock(&self.cloud);
        let out = cloud.register_instance(req)?;
        info!(
            node = req.node_name,
            instance = out.instance_id,
            "instance registered"
        );
        self.after_change(&cloud, Instant::now(), &config);
        Ok(out)
    }

    pub fn terminate_instance(&self, instance_id: &str) -> CloudResult<()> {
        let config = lock(&self.config).clone();
        let mut cloud = lock(&self.cloud);
        cloud.terminate_instance(instance_id)?;
        info!(instance = instance_id, "instance terminated");
        self.after_change(&cloud, Instant::now(), &config);
        Ok(())
    }

    pub fn config(&self) -> SimConfig {
        lock(&self.config).clone()
    }

    /// Applies a partial config; new rate limits start with full buckets.
    pub fn update_config(&self, patch: &serde_json::Value) -> Result<SimConfig, serde_json::Error> {
        let mut config = lock(&self.config);
        let merged = config.merged(patch)?;
        lock(&self.cloud).set_timing(timing_of(&merged));
        lock(&self.throttle).reset();
        *config = merged.clone();
        info!(?merged, "behaviour updated");
        Ok(merged)
    }

    pub fn counters(&self) -> BTreeMap<String, ActionCounters> {
        lock(&self.counters).clone()
    }

    pub fn with_state<T>(&self, f: impl FnOnce(StateDump<'_>) -> T) -> T {
        let cloud = lock(&self.cloud);
        f(StateDump {
            state: cloud.state(),
            invariant_violations: cloud.invariant_violations(),
        })
    }

    /// Back to the layout; counters, buckets and snapshots start over.
    pub fn reset(&self) {
        let config = lock(&self.config).clone();
        let mut cloud = lock(&self.cloud);
        cloud.reset();
        lock(&self.counters).clear();
        lock(&self.throttle).reset();
        lock(&self.snapshots).clear();
        self.after_change(&cloud, Instant::now(), &config);
        info!("cloud reset to its layout");
    }
}
