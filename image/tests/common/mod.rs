//! Fixtures shared by the image tests: fixed provenance and a bins directory with
//! stand-ins for the release binaries (copies of a small dynamically linked host
//! program, so library resolution is exercised without a release build).

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};

use eni_image::Provenance;
use eni_image::product::Inputs;

pub const EPOCH: u64 = 1_700_000_000;

pub fn provenance() -> Provenance {
    Provenance {
        version: "0.1.0".to_owned(),
        revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        source: "unknown".to_owned(),
        epoch: EPOCH,
    }
}

/// A glibc-linked host executable that prints nothing and exits 0.
pub const STAND_IN: &str = "/usr/bin/true";

/// `dir` filled with eni-operator, eni-agent and eni-cni copied from `STAND_IN`.
pub fn fake_bins(dir: &Path) -> Inputs {
    for name in ["eni-operator", "eni-agent", "eni-cni"] {
        std::fs::copy(STAND_IN, dir.join(name)).expect("copy stand-in binary");
    }
    Inputs {
        bins: dir.to_owned(),
        cni_plugins: PathBuf::from("/usr/lib/cni"),
    }
}

pub const BUSYBOX: &str = "/bin/busybox";
