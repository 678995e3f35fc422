//! Subnets that answered "exhausted", with when: skipped for a while instead of being
//! asked again on every pass.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

const EXHAUSTED_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct SubnetCache {
    exhausted: Mutex<HashMap<String, Instant>>,
}

impl SubnetCache {
    pub fn mark(&self, subnet: &str, now: Instant) {
        let mut m = self.exhausted.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(subnet.to_owned(), now);
    }

    /// The subnets known exhausted at `now`.
    pub fn exhausted(&self, now: Instant) -> BTreeSet<String> {
        let mut m = self.exhausted.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, t| now.saturating_duration_since(*t) < EXHAUSTED_FOR);
        m.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire() {
        let c = SubnetCache::default();
        let t0 = Instant::now();
        c.mark("s-1", t0);
        assert!(c.exhausted(t0 + Duration::from_secs(29)).contains("s-1"));
        assert!(c.exhausted(t0 + EXHAUSTED_FOR).is_empty());
    }
}
