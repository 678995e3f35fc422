//! The management network: how node namespaces reach the control plane, as real nodes
//! reach theirs over a network rather than through the host's loopback. A bridge in the
//! root namespace holds the API server's address; each node gets a veth `mgmt0` on it.

use std::net::Ipv4Addr;

use crate::netns::{self, NetnsError};

pub struct MgmtNet {
    bridge: String,
    /// First three octets of the /24.
    net: [u8; 3],
    ports: Vec<String>,
}

impl MgmtNet {
    /// Creates bridge `<prefix>br` with `100.64.0.0/10` addresses picked from `seed`
    /// (shared address space: never routed on the host's own networks).
    pub fn create(prefix: &str, seed: u32) -> Result<Self, NetnsError> {
        let bridge = format!("{prefix}br");
        let net = [100, 64 + (seed % 64) as u8, (seed / 64 % 256) as u8];
        // A bridge left by a crashed run of the same prefix is replaced.
        let _ = netns::ip(&["link", "del", &bridge]);
        netns::ip(&["link", "add", &bridge, "type", "bridge"])?;
        let me = MgmtNet {
            bridge,
            net,
            ports: Vec::new(),
        };
        netns::ip(&[
            "addr",
            "add",
            &format!("{}/24", me.host()),
            "dev",
            &me.bridge,
        ])?;
        netns::ip(&["link", "set", &me.bridge, "up"])?;
        Ok(me)
    }

    /// The root namespace's address: the API server binds here.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 1)
    }

    /// Plugs namespace `ns` in as host number `index` (from 0) and returns its address.
    pub fn attach(&mut self, ns: &str, index: u8) -> Result<Ipv4Addr, NetnsError> {
        let addr = Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 10 + index);
        let port = format!("{}m{index}", self.bridge.trim_end_matches("br"));
        let _ = netns::ip(&["link", "del", &port]);
        netns::ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "mgmt0", "netns", ns,
        ])?;
        netns::ip(&["link", "set", &port, "master", &self.bridge, "up"])?;
        netns::ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "mgmt0",
        ])?;
        netns::ip(&["-n", ns, "link", "set", "mgmt0", "up"])?;
        netns::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        self.ports.push(port);
        Ok(addr)
    }
}

impl Drop for MgmtNet {
    fn drop(&mut self) {
        for port in &self.ports {
            let _ = netns::ip(&["link", "del", port]);
        }
        let _ = netns::ip(&["link", "del", &self.bridge]);
    }
}
