//! What the benchmarks against the real control plane share (`burst`, `scale`): the
//! node type and its limits, the pod subnet, waits that fail with the operator's log,
//! pods created by several clients at once, and when each pod's PodNetwork first shows.

use std::{
    collections::HashMap,
    ops::Range,
    time::{Duration, Instant},
};

use eni_crds::PodNetwork;
use eni_e2e::{cluster::Cluster, process::ChildGuard};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{Api, Client, ResourceExt, api::PostParams, runtime::watcher};
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};
use vpc_sim::layout::{Layout, SubnetSpec};

use super::{
    BenchError,
    report::{Samples, memory_kib},
};

pub const INSTANCE_TYPE: &str = "m5.4xlarge";
/// Secondary addresses a pool ENI of INSTANCE_TYPE holds (30 per ENI, one primary).
pub const SLOTS_PER_ENI: u32 = 29;
/// Pool ENIs per node (8 per instance, one the node's own).
pub const ENIS_PER_NODE: u32 = 7;
pub const NAMESPACE: &str = "default";
/// Pods created at once: enough to outrun the operator, few enough for a 2-core machine.
pub const CREATE_CONCURRENCY: usize = 16;
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(900);
/// Lines of the operator's log a failure shows.
const LOG_LINES: usize = 30;

/// Refuses more pods than `nodes` nodes of INSTANCE_TYPE can address.
pub fn check_fits(pods: u32, nodes: u32) -> Result<(), BenchError> {
    let per = ENIS_PER_NODE * SLOTS_PER_ENI;
    if u64::from(pods) > u64::from(nodes) * u64::from(per) {
        return Err(BenchError::TooMany {
            pods,
            nodes,
            instance_type: INSTANCE_TYPE,
            per,
        });
    }
    Ok(())
}

/// Adds subnet `name` (`cidr`, tagged for pods) in the zone of the layout's first
/// subnet (the nodes' zone): the default pod subnets are /24s, too small for a burst.
pub fn add_pod_subnet(layout: &mut Layout, name: &str, cidr: &str) -> Result<(), BenchError> {
    let az = layout
        .subnets
        .first()
        .map(|s| s.az.clone())
        .unwrap_or_default();
    layout.subnets.push(SubnetSpec {
        name: name.into(),
        cidr: cidr
            .parse()
            .map_err(|e| BenchError::Usage(format!("subnet {cidr}: {e}")))?,
        az,
        id: None,
        tags: [("eni-operator.io/pods".to_owned(), "true".to_owned())].into(),
    });
    Ok(())
}

/// Calls the cloud answered so far: (mutating, describes, throttled).
pub fn calls(c: &Cluster) -> (u64, u64, u64) {
    c.sim
        .calls()
        .iter()
        .fold((0, 0, 0), |(m, d, t), (action, n, throttled)| {
            if action.starts_with("Describe") {
                (m, d + n, t + throttled)
            } else {
                (m + n, d, t + throttled)
            }
        })
}

/// Lines the operator logged at WARN and at ERROR, and the first few of them: a
/// benchmark that ran through errors (API server refusals, throttling) says so.
pub fn operator_log_levels(c: &Cluster, identity: &str) -> Result<LogLevels, BenchError> {
    let path = c.cp.dir().join(format!("{identity}.log"));
    let text = std::fs::read_to_string(&path).map_err(BenchError::Io)?;
    Ok(log_levels(&text))
}

#[derive(Debug, Default, PartialEq)]
pub struct LogLevels {
    pub warnings: u64,
    pub errors: u64,
    /// The first lines of either, ANSI colours removed.
    pub first: Vec<String>,
}

/// Counts tracing's text lines by level (`<timestamp> <LEVEL> <target>: ...`).
fn log_levels(text: &str) -> LogLevels {
    const FIRST: usize = 5;
    let mut levels = LogLevels::default();
    for line in text.lines() {
        let plain = strip_ansi(line);
        let counter = match plain.split_whitespace().nth(1) {
            Some("WARN") => &mut levels.warnings,
            Some("ERROR") => &mut levels.errors,
            _ => continue,
        };
        *counter += 1;
        if levels.first.len() < FIRST {
            levels.first.push(plain);
        }
    }
    levels
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Polls `check` until it returns Some, failing early if the operator died.
pub async fn wait<T, F, Fut>(
    operator: &ChildGuard,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BenchError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        alive(operator)?;
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(stuck(operator, timeout, what));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn alive(operator: &ChildGuard) -> Result<(), BenchError> {
    if operator.has_exited() {
        return Err(BenchError::OperatorDied(operator.log_tail(LOG_LINES)));
    }
    Ok(())
}

fn stuck(operator: &ChildGuard, timeout: Duration, what: &str) -> BenchError {
    BenchError::Stuck {
        timeout,
        what: what.to_owned(),
        log: operator.log_tail(LOG_LINES),
    }
}

/// Waits until a replica holds the operator's lease.
pub async fn leadership(client: &Client, operator: &ChildGuard) -> Result<(), BenchError> {
    let leases: Api<Lease> =
        Api::namespaced(client.clone(), eni_e2e::control_plane::SYSTEM_NAMESPACE);
    wait(operator, "leadership", Duration::from_secs(120), || async {
        Ok(leases
            .get_opt("eni-operator")
            .await?
            .and_then(|l| l.spec?.holder_identity))
    })
    .await?;
    Ok(())
}

/// The operator's resident memory now, in KiB.
pub fn rss_kib(operator: &ChildGuard) -> Result<u64, BenchError> {
    Ok(memory_kib(operator.pid()).map_err(BenchError::Proc)?.0)
}

/// A watch on the PodNetworks named `prefix*`, until `n` live ones were seen.
pub struct Networks(JoinHandle<Result<HashMap<String, Instant>, BenchError>>);

/// Starts watching and returns once the watch has listed what exists: a network written
/// after this is seen when it arrives, not when a long initial list ends. A watch, so
/// the bench does not load the API server with lists.
pub async fn watch_networks(
    client: Client,
    prefix: String,
    n: usize,
) -> Result<Networks, BenchError> {
    let (listed, ready) = oneshot::channel();
    let task = tokio::spawn(networks_seen(client, prefix, n, listed));
    match tokio::time::timeout(Duration::from_secs(120), ready).await {
        Ok(Ok(())) => Ok(Networks(task)),
        // The task ended before it listed: its error says why.
        Ok(Err(_)) => match task.await {
            Ok(Err(e)) => Err(e),
            other => Err(BenchError::Failed(format!(
                "the PodNetwork watch ended before listing: {other:?}"
            ))),
        },
        Err(_) => {
            task.abort();
            Err(BenchError::Timeout(
                Duration::from_secs(120),
                "the PodNetwork watch to list".into(),
            ))
        }
    }
}

/// When each of `n` live PodNetworks named `prefix*` was first seen; `listed` is told
/// when the initial list is done (or `n` were seen before that).
async fn networks_seen(
    client: Client,
    prefix: String,
    n: usize,
    listed: oneshot::Sender<()>,
) -> Result<HashMap<String, Instant>, BenchError> {
    let api: Api<PodNetwork> = Api::namespaced(client, NAMESPACE);
    let mut listed = Some(listed);
    let mut seen = HashMap::new();
    let stream = watcher(api, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.try_next().await? {
        let pn = match event {
            watcher::Event::Apply(pn) | watcher::Event::InitApply(pn) => pn,
            watcher::Event::InitDone => {
                if let Some(l) = listed.take() {
                    let _ = l.send(());
                }
                continue;
            }
            watcher::Event::Init | watcher::Event::Delete(_) => continue,
        };
        let name = pn.name_any();
        if name.starts_with(&prefix) && pn.metadata.deletion_timestamp.is_none() {
            seen.entry(name).or_insert_with(Instant::now);
            if seen.len() >= n {
                if let Some(l) = listed.take() {
                    let _ = l.send(());
                }
                return Ok(seen);
            }
        }
    }
    Err(BenchError::Failed("the PodNetwork watch ended".into()))
}

impl Networks {
    /// When each network was first seen, once all were; fails with the operator's log
    /// if that takes longer than PHASE_TIMEOUT or the operator dies.
    pub async fn all(
        mut self,
        operator: &ChildGuard,
        what: &str,
    ) -> Result<HashMap<String, Instant>, BenchError> {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        loop {
            match tokio::time::timeout(Duration::from_secs(1), &mut self.0).await {
                Ok(seen) => {
                    return seen.map_err(|e| {
                        BenchError::Failed(format!("the PodNetwork watch task: {e}"))
                    })?;
                }
                Err(_) => {
                    if let Err(e) = alive(operator) {
                        self.0.abort();
                        return Err(e);
                    }
                    if Instant::now() > deadline {
                        self.0.abort();
                        return Err(stuck(operator, PHASE_TIMEOUT, what));
                    }
                }
            }
        }
    }
}

/// Creates pod `name` bound to `node` (spec.nodeName set, as the scheduler would) and
/// returns when the API server answered.
pub async fn create_pod(api: &Api<Pod>, name: &str, node: &str) -> Result<Instant, BenchError> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/pause"}]},
    }))?;
    api.create(&PostParams::default(), &pod).await?;
    Ok(Instant::now())
}

/// Creates pods `prefix-{i}` for each `i` of `range`, round-robin over `nodes`, by
/// CREATE_CONCURRENCY clients at once: each pod's name and when its create answered.
pub async fn create_pods(
    client: &Client,
    prefix: &str,
    range: Range<u32>,
    nodes: &[String],
) -> Result<Vec<(String, Instant)>, BenchError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            let node = &nodes[i as usize % nodes.len()];
            async move {
                let name = format!("{prefix}-{i}");
                let at = create_pod(&api, &name, node).await?;
                Ok::<_, BenchError>((name, at))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect()
        .await
}

/// Per pod, from its create call's answer to its PodNetwork first seen (ms). The watch
/// may show a network before the create call has answered: 0 then.
pub fn latencies(created: &[(String, Instant)], seen: &HashMap<String, Instant>) -> Samples {
    let mut samples = Samples::default();
    for (name, at) in created {
        if let Some(s) = seen.get(name) {
            samples.push(s.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    samples
}

/// When the last of `created` got its network (`from` if none did).
pub fn last_seen(
    created: &[(String, Instant)],
    seen: &HashMap<String, Instant>,
    from: Instant,
) -> Instant {
    created
        .iter()
        .filter_map(|(name, _)| seen.get(name))
        .max()
        .copied()
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_by_level() {
        let log = "2026-11-28T03:51:40.1Z  INFO eni_operator::run: leading\n\
                   \x1b[2m2026-11-28T03:51:41.2Z\x1b[0m \x1b[33m WARN\x1b[0m \x1b[2meni_operator::cloud\x1b[0m: throttled\n\
                   2026-11-28T03:51:42.3Z ERROR eni_operator::pods: conflict\n\
                   a message line that says WARN\n";
        let levels = log_levels(log);
        assert_eq!((levels.warnings, levels.errors), (1, 1));
        assert_eq!(
            levels.first,
            [
                "2026-11-28T03:51:41.2Z  WARN eni_operator::cloud: throttled",
                "2026-11-28T03:51:42.3Z ERROR eni_operator::pods: conflict",
            ]
        );
        assert_eq!(log_levels(""), LogLevels::default());
    }
}
