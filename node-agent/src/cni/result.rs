//! The ADD result in the format of the config's spec version.

use serde_json::{Value, json};

use crate::protocol::AttachmentResult;

use super::config::Dns;
use super::version::SpecVersion;

/// Renders what the agent wired as the spec's result object. The same object is what
/// later plugins of a chain receive as `prevResult`.
pub fn render(version: SpecVersion, wired: &AttachmentResult, dns: &Dns) -> Value {
    let interfaces: Vec<Value> = wired
        .interfaces
        .iter()
        .map(|i| {
            let mut o = json!({ "name": i.name });
            if let Some(mac) = &i.mac {
                o["mac"] = json!(mac);
            }
            if let Some(sandbox) = &i.sandbox {
                o["sandbox"] = json!(sandbox);
            }
            o
        })
        .collect();
    let ips: Vec<Value> = wired
        .ips
        .iter()
        .map(|ip| {
            let mut o = json!({ "address": ip.address });
            if version.ips_carry_version() {
                let family = if ip.address.contains(':') { "6" } else { "4" };
                o["version"] = json!(family);
            }
            if let Some(gw) = &ip.gateway {
                o["gateway"] = json!(gw);
            }
            if let Some(index) = ip.interface {
                o["interface"] = json!(index);
            }
            o
        })
        .collect();
    let routes: Vec<Value> = wired
        .routes
        .iter()
        .map(|r| {
            let mut o = json!({ "dst": r.dst });
            if let Some(gw) = &r.gw {
                o["gw"] = json!(gw);
            }
            o
        })
        .collect();
    json!({
        "cniVersion": version.as_str(),
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Interface, IpConfig, Route};

    fn wired() -> AttachmentResult {
        AttachmentResult {
            interfaces: vec![
                Interface {
                    name: "enia1b2c3".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    sandbox: Some("/var/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.1.5/32".into(),
                gateway: Some("169.254.1.1".into()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".into()),
            }],
        }
    }

    #[test]
    fn v1_result_has_interfaces_ips_routes_and_dns() {
        let dns = Dns {
            nameservers: vec!["10.96.0.10".into()],
            ..Dns::default()
        };
        let r = render(SpecVersion::V1_1_0, &wired(), &dns);
        assert_eq!(r["cniVersion"], "1.1.0");
        assert_eq!(r["interfaces"][1]["sandbox"], "/var/run/netns/p");
        assert!(r["interfaces"][0].get("sandbox").is_none());
        assert_eq!(r["ips"][0]["interface"], 1);
        assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
        assert!(r["ips"][0].get("version").is_none());
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
    }

    #[test]
    fn v04_ips_carry_the_family() {
        let r = render(SpecVersion::V0_4_0, &wired(), &Dns::default());
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["dns"], json!({}));
    }
}
