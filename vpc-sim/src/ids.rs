//! Resource ids and MAC addresses shaped like the cloud's: EC2's `eni-` + 17 hex digits
//! and `02:..` MACs, or Alibaba Cloud's `eni-` + 20 base-36 characters, `vsw-` for
//! vSwitches and `00:16:3e:..` MACs.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::catalog::Cloud;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Issues unique ids from a seeded generator, so a run with the same seed and the same
/// calls produces the same ids.
#[derive(Clone, Debug)]
pub struct IdGen {
    style: Cloud,
    rng: StdRng,
    issued: HashSet<String>,
}

impl IdGen {
    pub fn new(seed: u64, style: Cloud) -> Self {
        Self {
            style,
            rng: StdRng::seed_from_u64(seed),
            issued: HashSet::new(),
        }
    }

    /// A new id of a kind named by its EC2 prefix: on EC2 `prefix` + `-` + 17 lower-case
    /// hex digits (`eni-0123456789abcdef0`); on Alibaba Cloud the kind's own prefix
    /// (`subnet` is a `vsw`) + `-` + 20 base-36 characters (`eni-bp1...`).
    pub fn id(&mut self, prefix: &str) -> String {
        loop {
            let id = match self.style {
                Cloud::Aws => {
                    let n: u128 = self.rng.random::<u128>() & ((1u128 << 68) - 1);
                    format!("{prefix}-{n:017x}")
                }
                Cloud::Alibaba => {
                    let prefix = if prefix == "subnet" { "vsw" } else { prefix };
                    let body: String = (0..20)
                        .map(|_| char::from(BASE36[self.rng.random_range(0..BASE36.len())]))
                        .collect();
                    format!("{prefix}-{body}")
                }
            };
            if self.issued.insert(id.clone()) {
                return id;
            }
        }
    }

    /// A unicast MAC as the cloud hands them out: locally administered `02:` on EC2,
    /// Alibaba's `00:16:3e` OUI on ECS.
    pub fn mac(&mut self) -> String {
        loop {
            let b: [u8; 5] = self.rng.random();
            let mac = match self.style {
                Cloud::Aws => format!(
                    "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[0], b[1], b[2], b[3], b[4]
                ),
                Cloud::Alibaba => {
                    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
                }
            };
            if self.issued.insert(mac.clone()) {
                return mac;
            }
        }
    }

    /// Remembers ids that were fixed by the layout so that none is issued twice.
    pub fn reserve(&mut self, id: &str) {
        self.issued.insert(id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_ec2_shape_and_are_reproducible() {
        let mut a = IdGen::new(7, Cloud::Aws);
        let mut b = IdGen::new(7, Cloud::Aws);
        let id = a.id("eni");
        assert_eq!(id, b.id("eni"));
        let hex = id.strip_prefix("eni-").unwrap();
        assert_eq!(hex.len(), 17);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let mac = a.mac();
        assert!(mac.starts_with("02:") && mac.len() == 17);
    }

    #[test]
    fn ids_have_alibaba_shape() {
        let mut g = IdGen::new(7, Cloud::Alibaba);
        let vsw = g.id("subnet");
        let body = vsw.strip_prefix("vsw-").unwrap();
        assert_eq!(body.len(), 20);
        assert!(body.bytes().all(|c| BASE36.contains(&c)));
        assert!(g.id("eni").starts_with("eni-"));
        assert!(g.mac().starts_with("00:16:3e:"));
    }
}
