//! CNI CHECK and GC as libcni runs them with containerd's own data.

use super::*;

/// A running pod's CNI attachment as containerd made it.
pub(super) struct Attached {
    node: &'static str,
    pub(super) ip: Ipv4Addr,
    /// The sandbox's container ID (CNI_CONTAINERID).
    sandbox: String,
    /// The sandbox's network namespace as the node sees it (CNI_NETNS).
    netns: String,
    /// The same namespace bound on the host, for `ip -n`.
    pub(super) host_netns: String,
}

/// Waits until pod `default/<name>` on `node` is Ready and returns its attachment.
pub(super) async fn attached(
    bed: &Bed,
    name: &str,
    node: &'static str,
) -> Result<Attached, BedError> {
    let ip = bed
        .wait_ready("default", name, Duration::from_secs(120))
        .await?;
    let real = bed.real_node(node)?;
    let ids = real.pod_sandbox_ids("default", name)?;
    let [sandbox] = ids.as_slice() else {
        return Err(BedError::Other(format!(
            "{name} has sandboxes {ids:?}, not one"
        )));
    };
    Ok(Attached {
        node,
        ip,
        sandbox: sandbox.clone(),
        netns: real.sandbox_netns(sandbox)?,
        host_netns: bed.expose_pod_netns("default", name).await?,
    })
}

/// CNI CHECK of `a` as libcni runs it with containerd's cached ADD: `Err(message)` when
/// it fails.
pub(super) fn libcni_check(bed: &Bed, a: &Attached) -> Result<Result<String, String>, BedError> {
    Ok(bed.real_node(a.node)?.libcni(&[
        "check",
        "--container-id",
        &a.sandbox,
        "--netns",
        &a.netns,
    ])?)
}

/// `ip` argument lists from words.
fn ip_args(words: &str) -> Vec<String> {
    words.split_whitespace().map(str::to_owned).collect()
}

/// Runs `ip` with each argument list; each must succeed.
fn ip_all(commands: &[Vec<String>]) -> Result<(), BedError> {
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eni_e2e::netns::ip(&args)?;
    }
    Ok(())
}

/// One way a stray admin or another tool breaks a pod's wiring, what CHECK must then
/// name, and how the admin puts it back.
struct Breakage {
    pod: &'static str,
    what: String,
    breaks: Vec<Vec<String>>,
    expect: String,
    restores: Vec<Vec<String>>,
    /// The VM no longer reaches the pod meanwhile (checked when true).
    cuts_the_vm_off: bool,
}

/// The ways the trial breaks the pods on r1, read from their current wiring.
fn breakages(bed: &Bed, live: &BTreeMap<&str, Attached>) -> Result<Vec<Breakage>, BedError> {
    let node = bed.real_node("r1")?.config().netns.clone();
    let net = node_net(bed, "r1")?;
    let shared = &live["shared-r1"];
    let (pod, ip) = (&shared.host_netns, shared.ip);
    let table = net
        .rules
        .iter()
        .find(|r| r.contains(&format!("from {ip} ")))
        .and_then(|r| r.split(" lookup ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .ok_or_else(|| BedError::Other(format!("no `from {ip}` rule on r1")))?
        .to_owned();
    let mut out = vec![
        Breakage {
            pod: "shared-r1",
            what: "the pod's default route deleted inside its namespace".into(),
            breaks: vec![ip_args(&format!("-n {pod} route del default"))],
            expect: "pod: route missing: 0.0.0.0/0 via 169.254.1.1 dev eth0 onlink table 254"
                .into(),
            restores: vec![ip_args(&format!(
                "-n {pod} route add default via 169.254.1.1 dev eth0 onlink"
            ))],
            cuts_the_vm_off: true,
        },
        Breakage {
            pod: "shared-r1",
            what: format!("the node's `from {ip} lookup {table}` rule deleted"),
            breaks: vec![ip_args(&format!(
                "-n {node} rule del from {ip} priority 2048"
            ))],
            expect: format!("host: rule missing: 2048: from {ip} lookup {table}"),
            restores: vec![ip_args(&format!(
                "-n {node} rule add from {ip} lookup {table} priority 2048 protocol 225"
            ))],
            cuts_the_vm_off: false,
        },
    ];
    let exclusive = &live["exclusive-r1"];
    let pod = &exclusive.host_netns;
    let addr = eni_e2e::netns::ip(&["-n", pod, "-4", "-o", "addr", "show", "dev", "eth0"])?;
    let cidr = addr
        .split(" inet ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .ok_or_else(|| BedError::Other(format!("no address on eth0 of exclusive-r1: {addr}")))?
        .to_owned();
    // Deleting the address takes the routes with it: put back all the pod had.
    let mut restores = vec![ip_args(&format!("-n {pod} addr add {cidr} dev eth0"))];
    for route in eni_e2e::netns::ip(&["-n", pod, "-4", "route", "show", "table", "main"])?.lines() {
        let mut args = ip_args(&format!("-n {pod} route replace"));
        args.extend(
            route
                .split_whitespace()
                .filter(|w| *w != "linkdown")
                .map(str::to_owned),
        );
        restores.push(args);
    }
    out.push(Breakage {
        pod: "exclusive-r1",
        what: format!("the pod's address {cidr} deleted inside its namespace"),
        breaks: vec![ip_args(&format!("-n {pod} addr del {cidr} dev eth0"))],
        expect: format!("pod: address {cidr} missing on eth0"),
        restores,
        cuts_the_vm_off: true,
    });
    let trunk = &live["trunk-r1"];
    let link = net
        .links_of(&trunk.sandbox)
        .first()
        .map(|l| l.name.clone())
        .ok_or_else(|| BedError::Other("no host link of trunk-r1".into()))?;
    let ip = trunk.ip;
    out.push(Breakage {
        pod: "trunk-r1",
        what: format!("the node's route to the pod ({ip}/32 dev {link}) deleted"),
        breaks: vec![ip_args(&format!("-n {node} route del {ip}/32 dev {link}"))],
        expect: format!("host: route missing: {ip}/32 dev {link} table 254"),
        restores: vec![ip_args(&format!(
            "-n {node} route add {ip}/32 dev {link} protocol 225"
        ))],
        cuts_the_vm_off: false,
    });
    Ok(out)
}

/// CNI CHECK and GC as libcni (containerd's CNI library) calls them, with the node's
/// conflist, containerd's cached ADD results and containerd's list of sandboxes
/// (`eni-libcni` inside the node). CHECK passes for pods in every mode; after a stray
/// `ip` command breaks a pod's wiring (pod route, node rule, pod address, node route)
/// CHECK fails naming what is missing, keeps failing (the agent does not rewire on its
/// own), and passes once the admin restores it. GC with containerd's full list releases
/// nothing. Two sandboxes removed behind containerd's back (no CNI DEL) leave stale
/// attachments: GC with a list that still names them keeps them; GC with containerd's
/// list releases both (the SharedIP one through libcni's DEL from its cache, the Trunk
/// one, whose cache entry is gone too, through eni-cni's own GC), state, links, routes
/// and rules, and the Trunk member ENI goes back to the node, while every valid pod
/// still passes CHECK and answers the VM.
pub(super) async fn cni_check_and_gc_through_libcni() -> Result<(), Failed> {
    let (bed, vm) = real_bed(Pools::OnePerMode).await?;
    with_bed(&bed, || async {
        let pods: [(&str, &'static str, &str); 7] = [
            ("shared-r1", "r1", "shared"),
            ("exclusive-r1", "r1", "exclusive"),
            ("trunk-r1", "r1", "trunk"),
            ("shared-r2", "r2", "shared"),
            ("exclusive-r2", "r2", "exclusive"),
            ("stale-shared", "r2", "shared"),
            ("stale-trunk", "r2", "trunk"),
        ];
        for (name, node, mode) in pods {
            bed.create_test_pod("default", name, node, &[("mode", mode)])
                .await?;
        }
        let mut live: BTreeMap<&str, Attached> = BTreeMap::new();
        for (name, node, _) in pods {
            live.insert(name, attached(&bed, name, node).await?);
        }
        let mut failures = Vec::new();

        // CHECK of every pod as containerd wired it.
        for (name, a) in &live {
            let out = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {name} ({}) passes: {out:?}", short(&a.sandbox)),
                out.is_ok(),
                &mut failures,
            );
        }
        for b in breakages(&bed, &live)? {
            let a = &live[b.pod];
            ip_all(&b.breaks)?;
            let broken = libcni_check(&bed, a)?;
            println!("  CHECK {} with {}: {broken:?}", b.pod, b.what);
            check(
                &format!("CHECK {} fails naming it: `{}`", b.pod, b.expect),
                matches!(&broken, Err(m) if m.contains(&b.expect)),
                &mut failures,
            );
            if b.cuts_the_vm_off {
                check(
                    &format!("the VM no longer reaches {} meanwhile", b.pod),
                    !probe::ping(&vm.netns, a.ip),
                    &mut failures,
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            check(
                "still failing 2 s later: the agent does not rewire on its own",
                matches!(libcni_check(&bed, a)?, Err(m) if m.contains(&b.expect)),
                &mut failures,
            );
            ip_all(&b.restores)?;
            let fixed = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {} passes once restored: {fixed:?}", b.pod),
                fixed.is_ok(),
                &mut failures,
            );
        }

        // GC on r2.
        let r2 = bed.real_node("r2")?;
        let gc = |valid: &[String]| -> Result<Result<String, String>, BedError> {
            let mut args = vec!["gc"];
            for id in valid {
                args.extend(["--valid", id.as_str()]);
            }
            Ok(r2.libcni(&args)?)
        };
        let cached = || -> Result<BTreeSet<String>, BedError> {
            let out = r2.libcni(&["cached"])?.map_err(BedError::Other)?;
            serde_json::from_str(&out)
                .map_err(|e| BedError::Other(format!("eni-libcni cached: {e}: {out}")))
        };
        let record_ids = || -> Result<BTreeSet<String>, BedError> {
            Ok(agent_records(&bed, "r2")?
                .into_iter()
                .map(|r| r.request.container_id)
                .collect())
        };
        let on_r2: Vec<&Attached> = live.values().filter(|a| a.node == "r2").collect();
        let before = record_ids()?;
        let out = gc(&r2.sandbox_ids()?)?;
        check(
            &format!("GC with containerd's full list succeeds: {out:?}"),
            out.is_ok(),
            &mut failures,
        );
        let net = node_net(&bed, "r2")?;
        check(
            &format!(
                "... and releases nothing: {} agent records, a host link for each of the {} pods",
                before.len(),
                on_r2.len()
            ),
            record_ids()? == before
                && on_r2
                    .iter()
                    .all(|a| before.contains(&a.sandbox) && !net.links_of(&a.sandbox).is_empty()),
            &mut failures,
        );

        // Stale attachments for real: kubelet stopped (it would have containerd stop the
        // sandboxes, which calls DEL), the pods force-deleted from the API, their
        // sandboxes removed behind CRI's back and containerd restarted to forget them.
        let stale_names = ["stale-shared", "stale-trunk"];
        let records = agent_records(&bed, "r2")?;
        let stale: Vec<Record> = stale_names
            .iter()
            .filter_map(|name| {
                records
                    .iter()
                    .find(|r| r.request.container_id == live[name].sandbox)
                    .cloned()
            })
            .collect();
        check(
            "the agent holds a record for each pod about to go stale",
            stale.len() == stale_names.len(),
            &mut failures,
        );
        r2.stop_kubelet();
        let pods_api: Api<Pod> = Api::namespaced(bed.client.clone(), "default");
        for name in stale_names {
            pods_api
                .delete(name, &DeleteParams::default().grace_period(0))
                .await?;
        }
        let removed: BTreeSet<String> = r2
            .remove_pods_behind_runtime("default", &stale_names)
            .await?
            .into_iter()
            .collect();
        r2.start_kubelet()?;
        let stale_ids: BTreeSet<String> = stale_names
            .iter()
            .map(|n| live[n].sandbox.clone())
            .collect();
        check(
            "both stale sandboxes removed from containerd behind its back",
            removed == stale_ids,
            &mut failures,
        );
        // The runtime lost stale-trunk's cached result as well: only eni-cni's own GC,
        // which judges by the agent's records, can find that one.
        let trunk_id = live["stale-trunk"].sandbox.clone();
        let shared_id = live["stale-shared"].sandbox.clone();
        r2.sh(&format!("rm -f /var/lib/cni/results/*-{trunk_id}-eth0"))?;
        let in_cache = cached()?;
        check(
            "libcni's cache still has stale-shared's ADD result, not stale-trunk's",
            in_cache.contains(&shared_id) && !in_cache.contains(&trunk_id),
            &mut failures,
        );
        let valid = r2.sandbox_ids()?;
        check(
            &format!(
                "containerd's list ({} sandboxes) lacks the stale ones and has every live pod",
                valid.len()
            ),
            !valid.iter().any(|id| stale_ids.contains(id))
                && on_r2
                    .iter()
                    .filter(|a| !stale_ids.contains(&a.sandbox))
                    .all(|a| valid.contains(&a.sandbox)),
            &mut failures,
        );
        check(
            "the agent still holds the stale attachments (no DEL reached it)",
            stale_ids.is_subset(&record_ids()?),
            &mut failures,
        );
        let mut listed = valid.clone();
        listed.extend(stale_ids.iter().cloned());
        let out = gc(&listed)?;
        check(
            &format!("GC with a list that still names them succeeds and keeps them: {out:?}"),
            out.is_ok() && stale_ids.is_subset(&record_ids()?) && cached()?.contains(&shared_id),
            &mut failures,
        );
        let started = Instant::now();
        let out = gc(&valid)?;
        println!(
            "  GC with containerd's list: {out:?} in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        check(
            "GC with containerd's list succeeds",
            out.is_ok(),
            &mut failures,
        );
        let after = record_ids()?;
        let expected: BTreeSet<String> = before.difference(&stale_ids).cloned().collect();
        check(
            &format!(
                "the agent's records are the live pods' only ({} left)",
                after.len()
            ),
            after == expected,
            &mut failures,
        );
        let net = node_net(&bed, "r2")?;
        for record in &stale {
            let id = &record.request.container_id;
            let address = record.request.allocation.address;
            let links: Vec<String> = net.links_of(id).iter().map(|l| l.name.clone()).collect();
            check(
                &format!(
                    "no link of stale {} left on r2 ({links:?})",
                    record.pod.name
                ),
                links.is_empty(),
                &mut failures,
            );
            let naming = net.naming(address);
            check(
                &format!("no route, rule or proxy entry for {address} left on r2 ({naming:?})"),
                naming.is_empty(),
                &mut failures,
            );
        }
        if let Some(trunk) = stale.iter().find(|r| r.request.container_id == trunk_id) {
            let mac = trunk.request.allocation.eni_mac.to_string();
            let link = net.link_with_mac(&mac);
            check(
                &format!(
                    "stale-trunk's member ENI {mac} is back in r2's namespace, unmarked ({:?})",
                    link.map(|l| &l.name)
                ),
                link.is_some_and(|l| l.alias.is_empty()),
                &mut failures,
            );
        }
        check(
            "libcni's cache no longer holds stale-shared (its DEL ran)",
            !cached()?.contains(&shared_id),
            &mut failures,
        );
        let logs = r2.container_logs(100_000);
        let gc_lines = |id: &str| {
            logs.lines()
                .filter(|l| l.contains("GC: removing stale wiring") && l.contains(id))
                .count()
        };
        check(
            "the agent's GC released stale-trunk (its log says so), libcni's DEL stale-shared",
            gc_lines(&trunk_id) > 0 && gc_lines(&shared_id) == 0,
            &mut failures,
        );

        // Every valid pod unharmed.
        for (name, a) in live.iter().filter(|(_, a)| !stale_ids.contains(&a.sandbox)) {
            bed.wait_ready("default", name, Duration::from_secs(60))
                .await?;
            let out = libcni_check(&bed, a)?;
            check(
                &format!("CHECK {name} still passes: {out:?}"),
                out.is_ok(),
                &mut failures,
            );
            check(
                &format!("ping VM -> {name} ({})", a.ip),
                probe::ping(&vm.netns, a.ip),
                &mut failures,
            );
        }
        result(failures)
    })
    .await
}
