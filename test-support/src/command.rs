//! Commands a test runs to set up or inspect the kernel (`ip`, `tc`, `iptables`).

use std::process::Command;

/// Runs `args[0]` with the rest as arguments and returns its stdout; panics with its
/// stderr when it fails.
pub fn must(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
