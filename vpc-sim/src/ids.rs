//! Resource ids and MAC addresses shaped like EC2's (`eni-` + 17 hex digits, `02:..` MACs).

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Issues unique ids from a seeded generator, so a run with the same seed and the same
/// calls produces the same ids.
#[derive(Clone, Debug)]
pub struct IdGen {
    rng: StdRng,
    issued: HashSet<String>,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            issued: HashSet::new(),
        }
    }

    /// `prefix` + `-` + 17 lower-case hex digits, e.g. `eni-0123456789abcdef0`.
    pub fn id(&mut self, prefix: &str) -> String {
        loop {
            let n: u128 = self.rng.random::<u128>() & ((1u128 << 68) - 1);
            let id = format!("{prefix}-{n:017x}");
            if self.issued.insert(id.clone()) {
                return id;
            }
        }
    }

    /// A locally administered unicast MAC (`02:` first octet, as EC2 hands out).
    pub fn mac(&mut self) -> String {
        loop {
            let b: [u8; 5] = self.rng.random();
            let mac = format!(
                "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[0], b[1], b[2], b[3], b[4]
            );
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
        let mut a = IdGen::new(7);
        let mut b = IdGen::new(7);
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
}
