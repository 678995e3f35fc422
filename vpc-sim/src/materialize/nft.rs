//! Anti-spoofing and security groups as one nftables table in the `vpc` namespace.
//!
//! The whole table is regenerated from the view and swapped in one `nft -f -`
//! transaction (create, delete, recreate), so a rule change never leaves a window with a
//! half-written ruleset and never has to diff individual rules.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::Stdio;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::dataplane_view::{IngressRule, Protocol, SecurityGroupView};

use super::MaterializeError;
use super::internet::{IGW_LINK, NAT_GATEWAY, PEERED_NET};
use super::plan::Desired;

/// The ruleset text for the table `table` (the materializer's prefix).
///
/// - `antispoof` (prerouting, before conntrack): a packet entering from a port must come
///   from an address or prefix the port's ENI holds.
/// - `forward`: replies of accepted flows pass (security groups are stateful); a new
///   flow is judged by the ingress rules of the groups of the ENI it is sent to, and
///   dropped when none matches. Traffic to the router itself (the gateway) is not
///   filtered, as on a real VPC.
pub fn ruleset(table: &str, desired: &Desired, groups: &[SecurityGroupView]) -> String {
    let mut out = String::new();
    // `table` first so that `delete` never fails on the first run.
    let _ = writeln!(out, "table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");

    let _ = writeln!(out, "  chain antispoof {{");
    let _ = writeln!(
        out,
        "    type filter hook prerouting priority raw; policy accept;"
    );
    for (port, spec) in &desired.ports {
        if spec.sources.is_empty() {
            let _ = writeln!(out, "    iifname \"{port}\" drop");
        } else {
            let _ = writeln!(
                out,
                "    iifname \"{port}\" ip saddr != {} drop",
                set(&spec.sources)
            );
        }
    }
    let _ = writeln!(out, "  }}");

    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(
        out,
        "    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(out, "    ct state established,related accept");
    if !desired.ports.is_empty() {
        let entries: Vec<String> = desired
            .ports
            .keys()
            .map(|port| format!("\"{port}\" : jump sg_{port}"))
            .collect();
        let _ = writeln!(out, "    oifname vmap {{ {} }}", entries.join(", "));
    }
    let _ = writeln!(out, "  }}");

    // The NAT gateway: what leaves for the internet from an address without a public
    // one (the instances' primary addresses have one) takes the gateway's address;
    // the peered network is reached unchanged.
    let public: Vec<Ipv4Net> = desired
        .ports
        .values()
        .filter_map(|p| p.primary.map(|c| Ipv4Net::from(c.address.addr())))
        .collect();
    let _ = writeln!(out, "  chain nat_gateway {{");
    let _ = writeln!(
        out,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    let unless_public = if public.is_empty() {
        String::new()
    } else {
        format!("ip saddr != {} ", set(&public))
    };
    let _ = writeln!(
        out,
        "    oifname \"{IGW_LINK}\" ip daddr != {PEERED_NET} {unless_public}snat to {NAT_GATEWAY}"
    );
    let _ = writeln!(out, "  }}");

    for (port, spec) in &desired.ports {
        let _ = writeln!(out, "  chain sg_{port} {{");
        let rules: BTreeSet<String> = groups
            .iter()
            .filter(|group| spec.security_group_ids.contains(&group.group_id))
            .flat_map(|group| group.ingress.iter())
            .filter_map(|rule| rule_line(rule, desired))
            .collect();
        for rule in rules {
            let _ = writeln!(out, "    {rule}");
        }
        let _ = writeln!(out, "    drop");
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

/// One accept rule, or `None` when the rule can match nothing (no source left, or an
/// inverted port range).
fn rule_line(rule: &IngressRule, desired: &Desired) -> Option<String> {
    let mut sources: Vec<Ipv4Net> = rule.cidrs.iter().map(Ipv4Net::trunc).collect();
    for group in &rule.source_group_ids {
        if let Some(members) = desired.group_members.get(group) {
            sources.extend(members.iter().copied());
        }
    }
    let sources = Ipv4Net::aggregate(&sources);
    if sources.is_empty() {
        return None;
    }
    let mut line = String::new();
    if sources.iter().all(|net| net.prefix_len() != 0) {
        let _ = write!(line, "ip saddr {} ", set(&sources));
    }
    let proto = match rule.protocol {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp => {
            line.push_str("meta l4proto icmp ");
            None
        }
        Protocol::All => None,
    };
    if let Some(proto) = proto {
        if rule.from_port > rule.to_port {
            tracing::warn!(?rule, "ingress rule with an inverted port range ignored");
            return None;
        }
        if rule.from_port == 0 && rule.to_port == u16::MAX {
            let _ = write!(line, "meta l4proto {proto} ");
        } else if rule.from_port == rule.to_port {
            let _ = write!(line, "{proto} dport {} ", rule.from_port);
        } else {
            let _ = write!(line, "{proto} dport {}-{} ", rule.from_port, rule.to_port);
        }
    }
    line.push_str("accept");
    Some(line)
}

/// An anonymous nft set; host routes are written as plain addresses.
fn set(nets: &[Ipv4Net]) -> String {
    let elements: Vec<String> = nets
        .iter()
        .map(|net| {
            if net.prefix_len() == 32 {
                net.addr().to_string()
            } else {
                net.to_string()
            }
        })
        .collect();
    format!("{{ {} }}", elements.join(", "))
}

/// Loads `ruleset` inside namespace `netns` (one atomic nft transaction).
pub async fn load(netns: &str, ruleset: &str) -> Result<(), MaterializeError> {
    let io_err = |source| MaterializeError::Io {
        context: format!("running nft in {netns}"),
        source,
    };
    // `ip netns exec` rather than setns in a pre-exec hook: no unsafe code, and the
    // namespace is a named one we created anyway.
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err)?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(ruleset.as_bytes()).await.map_err(io_err)?;
        // Dropping the pipe closes it: nft reads to end of file.
    }
    let output = child.wait_with_output().await.map_err(io_err)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(MaterializeError::Nft {
            netns: netns.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane_view::{DataplaneView, EniKind, EniPortView, NodeView};

    fn view(rules: Vec<IngressRule>) -> (Desired, Vec<SecurityGroupView>) {
        let eni = |id: &str, index: u32, addr: &str, group: &str| EniPortView {
            eni_id: id.to_string(),
            mac: format!("02:00:00:00:00:{index:02x}"),
            device_index: index,
            kind: if index == 0 {
                EniKind::Primary
            } else {
                EniKind::Secondary
            },
            addresses: vec![addr.parse().unwrap()],
            prefixes: vec![],
            security_group_ids: vec![group.to_string()],
            subnet_cidr: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
        };
        let v = DataplaneView {
            nodes: vec![NodeView {
                instance_id: "i-1".to_string(),
                netns: "vs1-n1".to_string(),
                enis: vec![
                    eni("eni-1", 0, "10.0.1.10", "sg-web"),
                    eni("eni-2", 1, "10.0.1.20", "sg-client"),
                ],
            }],
            security_groups: vec![SecurityGroupView {
                group_id: "sg-web".to_string(),
                ingress: rules,
            }],
        };
        let desired = Desired::from_view("vs1", &v).unwrap();
        (desired, v.security_groups)
    }

    fn rule(
        protocol: Protocol,
        from: u16,
        to: u16,
        cidrs: &[&str],
        groups: &[&str],
    ) -> IngressRule {
        IngressRule {
            protocol,
            from_port: from,
            to_port: to,
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            source_group_ids: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn rules_become_accepts_before_drop() {
        let (desired, groups) = view(vec![
            rule(Protocol::Icmp, 0, 0, &["0.0.0.0/0"], &[]),
            rule(Protocol::Tcp, 8080, 8080, &["10.9.0.0/16"], &["sg-client"]),
            rule(Protocol::Udp, 1000, 2000, &["10.0.0.0/8"], &[]),
            rule(Protocol::All, 0, 0, &[], &["sg-web"]),
        ]);
        let text = ruleset("vs1", &desired, &groups);
        let web = desired
            .ports
            .iter()
            .find(|(_, p)| p.eni_id == "eni-1")
            .map(|(name, _)| name.clone())
            .unwrap();
        let chain_start = text.find(&format!("chain sg_{web} {{")).unwrap();
        let chain = &text[chain_start..];
        let chain = &chain[..chain.find("  }").unwrap()];
        assert!(chain.contains("    meta l4proto icmp accept\n"), "{chain}");
        assert!(
            chain.contains("ip saddr { 10.0.1.20, 10.9.0.0/16 } tcp dport 8080 accept"),
            "{chain}"
        );
        assert!(chain.contains("ip saddr { 10.0.0.0/8 } udp dport 1000-2000 accept"));
        assert!(chain.contains("ip saddr { 10.0.1.10 } accept"));
        assert!(chain.trim_end().ends_with("drop"));
        assert!(text.contains(&format!(
            "iifname \"{web}\" ip saddr != {{ 10.0.1.10 }} drop"
        )));
        assert!(text.contains(&format!("\"{web}\" : jump sg_{web}")));
        assert!(text.starts_with("table ip vs1\ndelete table ip vs1\n"));
    }

    #[test]
    fn rules_matching_nothing_are_left_out() {
        let (desired, groups) = view(vec![
            rule(Protocol::Tcp, 90, 80, &["10.0.0.0/8"], &[]),
            rule(Protocol::Tcp, 80, 80, &[], &["sg-unknown"]),
        ]);
        let text = ruleset("vs1", &desired, &groups);
        assert!(!text.contains("dport"), "{text}");
    }

    #[test]
    fn empty_view_is_an_empty_table() {
        let text = ruleset("vs1", &Desired::default(), &[]);
        assert!(!text.contains("vmap"));
        assert!(text.contains("ct state established,related accept"));
    }
}
