//! eni-cni as the first plugin of a real conflist, followed by Debian's reference
//! `bandwidth` and `portmap` plugins, over the real dataplane: a small chain runner
//! does what a runtime does (prevResult, runtimeConfig from capabilities, reverse DEL).
//! Needs root and `containernetworking-plugins` (/usr/lib/cni); skips without them.

mod cni_harness;

use std::path::{Path, PathBuf};

use cni_harness::*;
use eni_test_support::command::must;
use serde_json::{Value, json};

const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Runs one command through the chain like libcni: ADD/CHECK in order, DEL in reverse,
/// each plugin given the chain's name/version, its runtimeConfig and the prevResult.
struct Chain<'a> {
    bed: &'a NodeBed,
    conflist: Value,
    runtime_config: Value,
}

impl Chain<'_> {
    fn plugin_path(kind: &str) -> PathBuf {
        if kind == "eni-cni" {
            PathBuf::from(eni_cni())
        } else {
            Path::new(REFERENCE_DIR).join(kind)
        }
    }

    fn netconf(&self, plugin: &Value, prev: Option<&Value>) -> String {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        conf["name"] = self.conflist["name"].clone();
        if let Some(caps) = plugin["capabilities"].as_object() {
            let mut rc = serde_json::Map::new();
            for (cap, enabled) in caps {
                if enabled == true && !self.runtime_config[cap].is_null() {
                    rc.insert(cap.clone(), self.runtime_config[cap].clone());
                }
            }
            conf["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }

    fn env<'e>(
        command: &'e str,
        container: &'e str,
        netns: &'e str,
        args: &'e str,
    ) -> Vec<(&'e str, &'e str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
            ("CNI_PATH", REFERENCE_DIR),
        ]
    }

    fn add(&self, container: &str, netns: &str, args: &str) -> Value {
        let mut prev: Option<Value> = None;
        for plugin in self.conflist["plugins"].as_array().unwrap() {
            let kind = plugin["type"].as_str().unwrap();
            let run = self.bed.run_plugin(
                &Self::plugin_path(kind),
                &Self::env("ADD", container, netns, args),
                &self.netconf(plugin, prev.as_ref()),
            );
            assert_eq!(run.code, 0, "{kind} ADD failed: {}", run.stdout);
            prev = Some(run.json());
        }
        prev.unwrap()
    }

    fn check(&self, container: &str, netns: &str, args: &str, result: &Value) {
        for plugin in self.conflist["plugins"].as_array().unwrap() {
            let kind = plugin["type"].as_str().unwrap();
            // Debian's portmap 1.1.1 fails its own CHECK on IPv4-only pods with the
            // iptables-nft backend ("could not check ipv6 dnat"); its ADD/DEL are checked
            // below through the nat table instead.
            if kind == "portmap" {
                continue;
            }
            let run = self.bed.run_plugin(
                &Self::plugin_path(kind),
                &Self::env("CHECK", container, netns, args),
                &self.netconf(plugin, Some(result)),
            );
            assert_eq!(
                (run.code, run.stdout.as_str()),
                (0, ""),
                "{kind} CHECK failed"
            );
        }
    }

    fn del(&self, container: &str, netns: &str, args: &str, result: &Value) {
        for plugin in self.conflist["plugins"].as_array().unwrap().iter().rev() {
            let kind = plugin["type"].as_str().unwrap();
            let run = self.bed.run_plugin(
                &Self::plugin_path(kind),
                &Self::env("DEL", container, netns, args),
                &self.netconf(plugin, Some(result)),
            );
            assert_eq!(
                (run.code, run.stdout.as_str()),
                (0, ""),
                "{kind} DEL failed"
            );
        }
    }
}

#[test]
fn first_in_a_chain_with_bandwidth_and_portmap() {
    if !Path::new(REFERENCE_DIR).join("portmap").exists() {
        eprintln!("skipping: reference CNI plugins not installed in {REFERENCE_DIR}");
        return;
    }
    let mut bed = NodeBed::new("ch");
    let netns = bed.pod();
    let agent = real_agent(
        &bed,
        vec![podnetwork("default", "web-0", "uid-1", "10.0.1.5")],
    );
    let chain = Chain {
        bed: &bed,
        conflist: json!({
            // Debian's reference plugins (v1.1.x) speak up to 1.0.0.
            "cniVersion": "1.0.0",
            "name": "eni",
            "plugins": [
                { "type": "eni-cni", "socketPath": agent.socket },
                { "type": "bandwidth", "capabilities": { "bandwidth": true } },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        }),
        runtime_config: json!({
            "bandwidth": { "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                           "egressRate": 8_000_000, "egressBurst": 1_000_000 },
            "portMappings": [ { "hostPort": 18080, "containerPort": 80, "protocol": "tcp" } ],
        }),
    };
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=uid-1";

    let result = chain.add("chain01", &netns, args);
    // Our interfaces and address survive the chain unchanged.
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "10.0.1.5/32");
    let host_if = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .expect("host interface in the result")
        .to_string();

    // bandwidth shaped the host veth (found through our result), portmap DNATs 18080.
    let qdisc = must(&["tc", "-n", &bed.host, "qdisc", "show", "dev", &host_if]);
    assert!(qdisc.contains("tbf"), "no tbf on {host_if}: {qdisc}");
    let nat = must(&[
        "ip", "netns", "exec", &bed.host, "iptables", "-t", "nat", "-S",
    ]);
    assert!(nat.contains("18080") && nat.contains("10.0.1.5"), "{nat}");
    // The pod really is on the VPC subnet: its gateway answers.
    let pod_ns = netns.trim_start_matches("/run/netns/");
    must(&[
        "ip", "netns", "exec", pod_ns, "ping", "-c", "1", "-W", "2", "10.0.1.1",
    ]);

    chain.check("chain01", &netns, args, &result);

    chain.del("chain01", &netns, args, &result);
    let links = must(&["ip", "-n", &bed.host, "-o", "link"]);
    assert!(!links.contains(&host_if), "host veth left behind: {links}");
    let nat = must(&[
        "ip", "netns", "exec", &bed.host, "iptables", "-t", "nat", "-S",
    ]);
    assert!(!nat.contains("18080"), "{nat}");
    assert_eq!(agent.state_files(), 0);
}
