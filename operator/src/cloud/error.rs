//! Typed cloud errors. The variants say what a caller should do, not which cloud said it:
//! back off (`Throttled`, `Transient`), stop growing (`LimitExceeded`, `SubnetExhausted`),
//! re-read state (`NotFound`, `InvalidState`) or fail (the rest).

use std::fmt;

/// Which cloud limit a request ran into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// No free interface slot (device index) on the instance.
    Attachments,
    /// The interface holds as many addresses or prefixes as its instance type allows.
    AddressesPerEni,
    /// The account or region may not create more interfaces.
    NetworkInterfaces,
    /// The trunk carries as many branch interfaces as its instance type allows.
    BranchInterfaces,
    /// Another quota, named by the cloud's error code.
    Other(String),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attachments => f.write_str("interfaces per instance"),
            Self::AddressesPerEni => f.write_str("addresses per interface"),
            Self::NetworkInterfaces => f.write_str("interfaces per account"),
            Self::BranchInterfaces => f.write_str("branch interfaces per trunk"),
            Self::Other(code) => write!(f, "quota {code}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The cloud's rate limit refused the request; retry later.
    #[error("throttled by the cloud ({code}): {message}")]
    Throttled { code: String, message: String },
    /// A quota was reached; retrying will not help until something is released.
    #[error("limit exceeded ({limit}): {message}")]
    LimitExceeded { limit: Limit, message: String },
    /// The subnet has no free address (or no free aligned prefix) left.
    #[error("subnet exhausted ({code}): {message}")]
    SubnetExhausted { code: String, message: String },
    /// The named resource does not exist (or no longer does).
    #[error("not found ({code}): {message}")]
    NotFound { code: String, message: String },
    /// The resource exists but is in a state that forbids the request (e.g. in use).
    #[error("invalid state ({code}): {message}")]
    InvalidState { code: String, message: String },
    /// A failure that may go away by itself: server errors, timeouts, broken connections.
    #[error("transient cloud failure ({code}): {message}")]
    Transient { code: String, message: String },
    /// The request was malformed or named a bad parameter: a bug or a bad configuration.
    #[error("invalid request ({code}): {message}")]
    InvalidRequest { code: String, message: String },
    /// A client token was reused with different parameters.
    #[error("client token reused with different parameters: {message}")]
    IdempotencyMismatch { message: String },
    /// Credentials are missing, wrong or lack permission.
    #[error("not authorized ({code}): {message}")]
    Unauthorized { code: String, message: String },
    /// The cloud (or this emulation of it) does not offer the operation.
    #[error("unsupported by the cloud ({code}): {message}")]
    Unsupported { code: String, message: String },
    /// An answer this code cannot use (missing fields, unknown error code).
    #[error("unexpected cloud answer: {0}")]
    Unexpected(String),
}

impl CloudError {
    /// Whether the same request may succeed later without anything else changing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }

    /// Short, stable name of the variant, used as the `result` label of metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::SubnetExhausted { .. } => "subnet_exhausted",
            Self::NotFound { .. } => "not_found",
            Self::InvalidState { .. } => "invalid_state",
            Self::Transient { .. } => "transient",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::IdempotencyMismatch { .. } => "idempotency_mismatch",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Unsupported { .. } => "unsupported",
            Self::Unexpected(_) => "unexpected",
        }
    }

    pub(crate) fn missing(what: &str) -> Self {
        Self::Unexpected(format!("answer lacks {what}"))
    }
}
