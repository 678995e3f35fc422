//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building, writing, reading or pushing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} not found at {path} ({hint})", path = path.display())]
    MissingInput {
        what: String,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("{path}: {reason}", path = path.display())]
    Elf { path: PathBuf, reason: String },
    #[error("{binary} needs {library}, found in none of {searched}", binary = binary.display())]
    LibraryNotFound {
        binary: PathBuf,
        library: String,
        searched: String,
    },
    #[error("{path} belongs to no installed Debian package: {detail}", path = path.display())]
    NotFromPackage { path: PathBuf, detail: String },
    #[error("running {command}: {detail}")]
    Command { command: String, detail: String },
    #[error("{path} is not a usable path inside an image: {reason}")]
    BadImagePath { path: String, reason: &'static str },
    #[error("{path} is added twice to one layer with different content")]
    ConflictingEntry { path: String },
    #[error("{0} is not a valid image reference or registry prefix")]
    BadReference(String),
    #[error("busybox at {path} lacks the applets {missing:?}", path = path.display())]
    MissingApplets { path: PathBuf, missing: Vec<String> },
    #[error("OCI types: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("build epoch {epoch}: {reason}")]
    Epoch { epoch: u64, reason: String },
    #[error("image layout {layout}: {reason}")]
    Layout { layout: String, reason: String },
    #[error("pushing {reference}: {source}")]
    Push {
        reference: String,
        source: Box<oci_client::errors::OciDistributionError>,
    },
    #[error("{reference}: the registry serves manifest {remote}, the local one is {local}")]
    DigestMismatch {
        reference: String,
        local: String,
        remote: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done to which path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
