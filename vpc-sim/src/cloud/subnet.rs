//! Address bookkeeping of a subnet: AWS reserves five addresses (network, .1 router,
//! .2 DNS, .3 future use, broadcast); addresses and /28 prefixes are handed out lowest
//! first.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::Subnet;

/// Prefix length of a delegated IPv4 prefix (EC2 only delegates /28s).
pub const DELEGATED_PREFIX_LEN: u8 = 28;

impl Subnet {
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        let net = u32::from(self.cidr.network());
        let ip = u32::from(ip);
        (net..=net + 3).contains(&ip) || ip == u32::from(self.cidr.broadcast())
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + 1)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.cidr.prefix_len())
    }

    /// What DescribeSubnets reports as availableIpAddressCount.
    pub fn available_count(&self) -> u32 {
        let used = self.addresses.len() as u32 + self.prefixes.len() as u32 * 16;
        self.size().saturating_sub(5).saturating_sub(used)
    }

    fn in_prefix(&self, ip: Ipv4Addr) -> Option<&String> {
        self.prefixes
            .iter()
            .find(|(p, _)| p.contains(&ip))
            .map(|(_, eni)| eni)
    }

    /// The ENI holding `ip` as an address or through a prefix.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<&String> {
        self.addresses.get(&ip).or_else(|| self.in_prefix(ip))
    }

    pub fn is_free(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(&ip) && !self.is_reserved(ip) && self.holder(ip).is_none()
    }

    /// The `n` lowest free addresses, not counting `exclude`; `None` when fewer are free.
    pub fn pick_addresses(&self, n: usize, exclude: &BTreeSet<Ipv4Addr>) -> Option<Vec<Ipv4Addr>> {
        if n == 0 {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(n);
        for ip in self.cidr.hosts() {
            if self.is_free(ip) && !exclude.contains(&ip) {
                out.push(ip);
                if out.len() == n {
                    return Some(out);
                }
            }
        }
        None
    }

    /// Whether the /28 `p` lies in the subnet and none of its addresses is reserved or
    /// in use.
    pub fn prefix_is_free(&self, p: Ipv4Net) -> bool {
        self.cidr.contains(&p)
            && p.hosts()
                .chain([p.network(), p.broadcast()])
                .all(|ip| self.is_free(ip))
    }

    /// The `n` lowest free aligned /28 blocks, not counting `exclude`.
    pub fn pick_prefixes(&self, n: usize, exclude: &[Ipv4Net]) -> Option<Vec<Ipv4Net>> {
        if n == 0 {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(n);
        let blocks = self.cidr.subnets(DELEGATED_PREFIX_LEN).ok()?;
        for p in blocks {
            if self.prefix_is_free(p) && !exclude.contains(&p) {
                out.push(p);
                if out.len() == n {
                    return Some(out);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn subnet(cidr: &str) -> Subnet {
        Subnet {
            id: "subnet-1".into(),
            cidr: cidr.parse().unwrap(),
            az: "us-east-1a".into(),
            tags: BTreeMap::new(),
            addresses: BTreeMap::new(),
            prefixes: BTreeMap::new(),
        }
    }

    #[test]
    fn five_addresses_are_reserved() {
        let s = subnet("10.0.3.0/28");
        assert_eq!(s.available_count(), 11);
        let all = s.pick_addresses(11, &BTreeSet::new()).unwrap();
        assert_eq!(all.first(), Some(&"10.0.3.4".parse().unwrap()));
        assert_eq!(all.last(), Some(&"10.0.3.14".parse().unwrap()));
        assert!(s.pick_addresses(12, &BTreeSet::new()).is_none());
        assert_eq!(s.gateway(), "10.0.3.1".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn prefixes_skip_reserved_and_used_blocks() {
        let mut s = subnet("10.0.1.0/24");
        s.addresses
            .insert("10.0.1.20".parse().unwrap(), "eni-a".into());
        let p = s.pick_prefixes(2, &[]).unwrap();
        // .0/28 holds reserved addresses, .16/28 holds .20.
        assert_eq!(p[0].to_string(), "10.0.1.32/28");
        assert_eq!(p[1].to_string(), "10.0.1.48/28");
        assert!(subnet("10.0.3.0/28").pick_prefixes(1, &[]).is_none());
    }
}
