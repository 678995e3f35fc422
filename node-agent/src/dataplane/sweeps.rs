//! Sweeps shared by DELs that arrive together. A DEL's leftovers (rules and proxy
//! entries of its address, an ENI table no pod uses) go in a sweep that must begin after
//! its own links are gone. Each sweep reads the host's rules, routes, links and proxy
//! entries, so one sweep serves every DEL whose links were gone when it began, instead
//! of one sweep each, in turn, under the dataplane lock.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct SweepTickets {
    /// One ticket per DEL whose own removal is done, numbered from 1.
    issued: AtomicU64,
    /// Every ticket up to this one was issued before a sweep that has finished began.
    covered: AtomicU64,
}

impl SweepTickets {
    /// A DEL's own removal is done: its ticket.
    pub fn issue(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether a sweep that began after `ticket` was issued has finished.
    pub fn covered(&self, ticket: u64) -> bool {
        self.covered.load(Ordering::SeqCst) >= ticket
    }

    /// A sweep begins (under the dataplane lock): the last ticket it covers.
    pub fn begin(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// The sweep that [`SweepTickets::begin`] returned `begun` for has finished.
    pub fn finished(&self, begun: u64) {
        self.covered.fetch_max(begun, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sweep_covers_every_del_done_before_it_began() {
        let t = SweepTickets::default();
        let (a, b) = (t.issue(), t.issue());
        assert!(!t.covered(a) && !t.covered(b), "nothing swept yet");
        let begun = t.begin();
        // Done while that sweep runs: not covered by it.
        let c = t.issue();
        t.finished(begun);
        assert!(t.covered(a) && t.covered(b));
        assert!(
            !t.covered(c),
            "its removal may have come after the sweep's reads"
        );
        let later = t.begin();
        t.finished(later);
        assert!(t.covered(c));
    }

    #[test]
    fn a_sweep_that_finishes_late_does_not_uncover_newer_tickets() {
        let t = SweepTickets::default();
        let a = t.issue();
        let early = t.begin();
        let b = t.issue();
        let late = t.begin();
        t.finished(late);
        t.finished(early);
        assert!(t.covered(a) && t.covered(b));
    }
}
