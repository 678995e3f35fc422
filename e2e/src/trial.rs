//! What the end-to-end trial harnesses (libtest-mimic) share: a trial that needs root
//! and runs its own tokio runtime, and named checks collected into one verdict.

use std::future::Future;
use std::time::Instant;

use libtest_mimic::{Failed, Trial};

use crate::bed::BedError;

/// Trial `name` running `f` on a runtime of its own; refused unless root (`why` says
/// what needs it). Prints the trial's duration.
pub fn as_root<Fut>(name: &'static str, why: &'static str, f: fn() -> Fut) -> Trial
where
    Fut: Future<Output = Result<(), Failed>> + 'static,
{
    Trial::test(name, move || {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(format!("needs root ({why})").into());
        }
        let rt = tokio::runtime::Runtime::new().map_err(|e| Failed::from(e.to_string()))?;
        let started = Instant::now();
        let out = rt.block_on(f());
        println!("{name}: {:.1}s", started.elapsed().as_secs_f64());
        out
    })
}

/// Prints one check and keeps it among `failures` when it failed.
pub fn check(what: &str, ok: bool, failures: &mut Vec<String>) {
    println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
    if !ok {
        failures.push(what.to_owned());
    }
}

/// The verdict of a trial's checks: every failed one named.
pub fn result(failures: Vec<String>) -> Result<(), BedError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BedError::Other(format!("failed: {failures:?}")))
    }
}
