//! Checks of what must always hold, used by the tests and the admin state dump.

use std::collections::BTreeMap;

use super::Cloud;

impl Cloud {
    /// Every violated invariant, described; empty when the state is sound.
    pub fn invariant_violations(&self) -> Vec<String> {
        let s = &self.state;
        let mut out = Vec::new();
        let mut owner: BTreeMap<std::net::Ipv4Addr, &str> = BTreeMap::new();
        for eni in s.enis.values() {
            let Some(subnet) = s.subnets.get(&eni.subnet_id) else {
                out.push(format!("{} is in unknown subnet {}", eni.id, eni.subnet_id));
                continue;
            };
            for ip in eni.all_ips() {
                if let Some(other) = owner.insert(ip, &eni.id) {
                    out.push(format!("{ip} held by both {other} and {}", eni.id));
                }
                if subnet.addresses.get(&ip) != Some(&eni.id) {
                    out.push(format!("{ip} of {} is not booked in {}", eni.id, subnet.id));
                }
            }
            for p in &eni.prefixes {
                if subnet.prefixes.get(p) != Some(&eni.id) {
                    out.push(format!(
                        "prefix {p} of {} is not booked in {}",
                        eni.id, subnet.id
                    ));
                }
                let clash = s
                    .enis
                    .values()
                    .flat_map(|e| e.all_ips())
                    .find(|ip| p.contains(ip));
                if let Some(ip) = clash {
                    out.push(format!("prefix {p} of {} overlaps address {ip}", eni.id));
                }
            }
            let limit = self.eni_ipv4_limit(eni);
            if eni.ipv4_slots() > limit {
                out.push(format!(
                    "{} holds {} address slots, limit {limit}",
                    eni.id,
                    eni.ipv4_slots()
                ));
            }
        }
        for subnet in s.subnets.values() {
            let booked = subnet.addresses.len() + subnet.prefixes.len();
            let held: usize = s
                .enis
                .values()
                .filter(|e| e.subnet_id == subnet.id)
                .map(|e| 1 + e.secondary_ips.len() + e.prefixes.len())
                .sum();
            if booked != held {
                out.push(format!(
                    "{} books {booked} addresses/prefixes but ENIs hold {held}",
                    subnet.id
                ));
            }
        }
        for inst in s.instances.values() {
            let Some(t) = self.catalog.get(&inst.instance_type) else {
                continue;
            };
            let attached: Vec<_> = s
                .enis
                .values()
                .filter(|e| {
                    e.attachment
                        .as_ref()
                        .is_some_and(|a| a.instance_id == inst.id)
                })
                .collect();
            if attached.len() as u32 > t.max_enis {
                out.push(format!(
                    "{} has {} ENIs, limit {}",
                    inst.id,
                    attached.len(),
                    t.max_enis
                ));
            }
            for trunk in attached {
                let members = s
                    .trunk_associations
                    .values()
                    .filter(|a| a.trunk_eni_id == trunk.id)
                    .count();
                if members as u32 > t.max_members {
                    out.push(format!(
                        "trunk {} has {members} members, limit {}",
                        trunk.id, t.max_members
                    ));
                }
            }
        }
        out
    }
}
