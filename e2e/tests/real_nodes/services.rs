//! Kubernetes Services through the real kube-proxy on each node: ClusterIP and NodePort
//! from pods of every mode to pods of every mode (same node, across nodes, and a pod
//! through its own Service: hairpin), from the nodes themselves (hostNetwork), and
//! NodePorts from a VPC host with both external traffic policies.

use super::*;

use k8s_openapi::api::core::v1::Service;

/// A test pod of the trial: its name is also its Services' selector (`app=<name>`).
struct Backend {
    name: String,
    mode: &'static str,
    node: &'static str,
    ip: Ipv4Addr,
    netns: String,
    /// `svc-<name>`: ClusterIP.
    cluster_ip: Ipv4Addr,
    /// `np-<name>`: NodePort, `externalTrafficPolicy: Cluster`.
    node_port: u16,
    /// `npl-<name>`: NodePort, `externalTrafficPolicy: Local`.
    local_port: u16,
}

/// Port the Services expose (to the pods' httpd on [`HTTP_PORT`]).
const SERVICE_PORT: u16 = 80;
/// kube-proxy syncs a new Service within a second or two; first contact waits this long.
const PROGRAMMED: Duration = Duration::from_secs(30);
/// Once programmed, a path that works answers within this.
const ANSWERS: Duration = Duration::from_secs(4);

pub(super) async fn services_in_every_mode() -> Result<(), Failed> {
    services(ProxyMode::Nftables, &["shared", "exclusive", "trunk"]).await
}

/// kube-proxy's iptables backend on the same paths, for SharedIP pods.
pub(super) async fn services_with_iptables_kube_proxy() -> Result<(), Failed> {
    services(ProxyMode::Iptables, &["shared"]).await
}

fn service(name: &str, app: &str, node_port: Option<&str>) -> Result<Service, BedError> {
    let mut spec = json!({
        "selector": {"app": app},
        "ports": [{"port": SERVICE_PORT, "targetPort": HTTP_PORT, "protocol": "TCP"}],
    });
    if let Some(policy) = node_port {
        spec["type"] = json!("NodePort");
        spec["externalTrafficPolicy"] = json!(policy);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .map_err(|e| BedError::Other(e.to_string()))
}

async fn create_service(bed: &Bed, svc: Service) -> Result<Service, BedError> {
    Ok(Api::<Service>::namespaced(bed.client.clone(), "default")
        .create(&Default::default(), &svc)
        .await?)
}

fn cluster_ip(svc: &Service) -> Result<Ipv4Addr, BedError> {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| BedError::Other(format!("Service {} has no ClusterIP", svc.name_any())))
}

fn node_port(svc: &Service) -> Result<u16, BedError> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.node_port)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| BedError::Other(format!("Service {} has no nodePort", svc.name_any())))
}

/// GET `path` from `ns` until it answers `want` or `within` passes; the last body.
async fn eventually(
    ns: &str,
    to: SocketAddr,
    path: &str,
    want: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = probe::http_get(ns, to, path);
        if got.as_deref() == Some(want) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Median and 99th percentile of `samples` (milliseconds).
fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

async fn services(proxy: ProxyMode, modes: &[&'static str]) -> Result<(), Failed> {
    // Each node holds two pods of every mode: m5.4xlarge has room for the Exclusive
    // ENIs, the trunk and the SharedIP ENI.
    let (bed, vm) = real_bed_of(Cloud::Aws, Pools::OnePerMode, "m5.4xlarge", proxy).await?;
    with_bed(&bed, || async {
        let mut pods = Vec::new();
        for &mode in modes {
            for node in ["r1", "r2"] {
                let name = format!("{mode}-{node}");
                bed.create_pod_from(test_pod(
                    "default",
                    &name,
                    node,
                    &[("mode", mode), ("app", &name)],
                ))
                .await?;
                pods.push((name, mode, node));
            }
        }
        let mut backends = Vec::new();
        for (name, mode, node) in pods {
            let svc = create_service(&bed, service(&format!("svc-{name}"), &name, None)?).await?;
            let np = create_service(
                &bed,
                service(&format!("np-{name}"), &name, Some("Cluster"))?,
            )
            .await?;
            let npl = create_service(&bed, service(&format!("npl-{name}"), &name, Some("Local"))?)
                .await?;
            let ip = bed
                .wait_ready("default", &name, Duration::from_secs(120))
                .await?;
            let netns = bed.expose_pod_netns("default", &name).await?;
            backends.push(Backend {
                cluster_ip: cluster_ip(&svc)?,
                node_port: node_port(&np)?,
                local_port: node_port(&npl)?,
                name,
                mode,
                node,
                ip,
                netns,
            });
        }
        let node_ip = |node: &str| bed.node(node).map(|n| n.instance.primary_ip);
        let mut failures = Vec::new();

        // The nodes themselves (hostNetwork pods, kubelet's probes) reach every pod by
        // its address and by its Service; this waits for kube-proxy to program them.
        for node in ["r1", "r2"] {
            let ns = bed.node(node)?.netns;
            for backend in &backends {
                for to in [
                    SocketAddr::from((backend.ip, HTTP_PORT)),
                    SocketAddr::from((backend.cluster_ip, SERVICE_PORT)),
                ] {
                    let got = eventually(&ns, to, "/index.html", &backend.name, PROGRAMMED).await;
                    check(
                        &format!("hostNetwork {node} -> {} at {to} answered {got:?}", backend.name),
                        got.as_deref() == Some(backend.name.as_str()),
                        &mut failures,
                    );
                }
            }
        }

        // ClusterIP from every pod to every pod's Service: same node, across nodes, and
        // each pod through its own Service (hairpin).
        for client in &backends {
            for backend in &backends {
                let to = SocketAddr::from((backend.cluster_ip, SERVICE_PORT));
                let got =
                    eventually(&client.netns, to, "/index.html", &backend.name, ANSWERS).await;
                let path = if client.name == backend.name {
                    "hairpin".to_owned()
                } else if client.node == backend.node {
                    "same node".to_owned()
                } else {
                    "across nodes".to_owned()
                };
                check(
                    &format!(
                        "ClusterIP {} ({path}): {} -> svc-{} {to} answered {got:?}",
                        proxy.as_str(),
                        client.name,
                        backend.name
                    ),
                    got.as_deref() == Some(backend.name.as_str()),
                    &mut failures,
                );
                // The Cluster NodePort from the pod, by its own node's address and the
                // other's.
                for node in ["r1", "r2"] {
                    let to = SocketAddr::from((node_ip(node)?, backend.node_port));
                    let got =
                        eventually(&client.netns, to, "/index.html", &backend.name, ANSWERS).await;
                    check(
                        &format!(
                            "NodePort Cluster from a pod: {} (on {}) -> {node} {to} reaches {}: {got:?}",
                            client.name, client.node, backend.name
                        ),
                        got.as_deref() == Some(backend.name.as_str()),
                        &mut failures,
                    );
                }
            }
        }

        // NodePorts from a VPC host. Cluster: every node forwards, the pod sees a node's
        // address. Local: only the pod's own node answers, and the pod sees the client.
        let vm_ip = vm.primary_ip.to_string();
        for backend in &backends {
            for node in ["r1", "r2"] {
                let to = SocketAddr::from((node_ip(node)?, backend.node_port));
                let got =
                    eventually(&vm.netns, to, "/index.html", &backend.name, PROGRAMMED).await;
                check(
                    &format!(
                        "NodePort Cluster: VM -> {node} {to} reaches {} (on {}): {got:?}",
                        backend.name, backend.node
                    ),
                    got.as_deref() == Some(backend.name.as_str()),
                    &mut failures,
                );
            }
            let to = SocketAddr::from((node_ip(backend.node)?, backend.local_port));
            // httpd listens on IPv6 too and reports `[::ffff:a.b.c.d]`.
            let mapped = format!("[::ffff:{vm_ip}]");
            let got = eventually(&vm.netns, to, "/cgi-bin/peer", &mapped, PROGRAMMED).await;
            check(
                &format!(
                    "NodePort Local: VM -> {} {to} reaches {} and it sees the VM's address {vm_ip}: {got:?}",
                    backend.node, backend.name
                ),
                got.as_deref() == Some(mapped.as_str()),
                &mut failures,
            );
            let other = if backend.node == "r1" { "r2" } else { "r1" };
            let to = SocketAddr::from((node_ip(other)?, backend.local_port));
            let got = probe::http_get(&vm.netns, to, "/index.html");
            check(
                &format!(
                    "NodePort Local: {other}, which has no endpoint of npl-{}, does not forward: {got:?}",
                    backend.name
                ),
                got.is_none(),
                &mut failures,
            );
        }

        // Latency of a request through a ClusterIP against the same request straight to
        // the pod, per mode, across nodes, interleaved.
        for &mode in modes {
            let (Some(client), Some(backend)) = (
                backends.iter().find(|b| b.mode == mode && b.node == "r2"),
                backends.iter().find(|b| b.mode == mode && b.node == "r1"),
            ) else {
                continue;
            };
            let (mut direct, mut via_service) = (Vec::new(), Vec::new());
            for _ in 0..40 {
                for (to, samples) in [
                    (SocketAddr::from((backend.ip, HTTP_PORT)), &mut direct),
                    (SocketAddr::from((backend.cluster_ip, SERVICE_PORT)), &mut via_service),
                ] {
                    let started = Instant::now();
                    if probe::http_get(&client.netns, to, "/index.html").is_some() {
                        samples.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            if direct.is_empty() || via_service.is_empty() {
                continue;
            }
            let (d50, d99) = p50_p99(&mut direct);
            let (s50, s99) = p50_p99(&mut via_service);
            println!(
                "  latency {mode} ({}), {} -> {} across nodes, HTTP GET: pod IP p50 {d50:.2} ms p99 {d99:.2} ms, ClusterIP p50 {s50:.2} ms p99 {s99:.2} ms, ratio p50 {:.2}",
                proxy.as_str(),
                client.name,
                backend.name,
                s50 / d50
            );
        }
        result(failures)
    })
    .await
}
