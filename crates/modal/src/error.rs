//! The client's errors, with gRPC codes mapped as Modal's Python SDK maps
//! them (`_STATUS_TO_EXCEPTION`).

use tonic::Code;

/// What went wrong talking to Modal.
#[derive(Debug, thiserror::Error)]
pub enum ModalError {
    /// The configuration (profile, URL, token) is unusable.
    #[error("{0}")]
    Config(String),
    /// An RPC failed after its retries.
    #[error("Modal {rpc} failed: {kind}: {message}")]
    Rpc {
        /// The RPC's name.
        rpc: &'static str,
        /// The class of the failure.
        kind: ErrorKind,
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// Something Modal did failed on its side (an image build, a sandbox).
    #[error("{0}")]
    Remote(String),
    /// A reply broke the protocol (a missing field, a bad token).
    #[error("Modal answered {rpc} with something errand cannot use: {why}")]
    Protocol {
        /// The RPC's name.
        rpc: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// Classes of RPC failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// InvalidArgument, OutOfRange.
    Invalid,
    /// FailedPrecondition, Aborted.
    Conflict,
    /// Unauthenticated.
    Auth,
    /// Canceled, Unknown, DeadlineExceeded, Unavailable.
    Service,
    /// NotFound.
    NotFound,
    /// AlreadyExists.
    AlreadyExists,
    /// PermissionDenied.
    PermissionDenied,
    /// ResourceExhausted.
    ResourceExhausted,
    /// Unimplemented.
    Unimplemented,
    /// Internal, DataLoss and the rest.
    Internal,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Invalid => "invalid request",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Auth => "not authenticated (check the Modal token)",
            ErrorKind::Service => "service unavailable",
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::ResourceExhausted => "resource exhausted",
            ErrorKind::Unimplemented => "not implemented by the server",
            ErrorKind::Internal => "internal error",
        })
    }
}

impl ErrorKind {
    /// The class of `code`.
    pub fn of(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::Invalid,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::Conflict,
            Code::Unauthenticated => ErrorKind::Auth,
            Code::Cancelled | Code::Unknown | Code::DeadlineExceeded | Code::Unavailable => {
                ErrorKind::Service
            }
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::Unimplemented => ErrorKind::Unimplemented,
            _ => ErrorKind::Internal,
        }
    }
}

impl ModalError {
    /// The error for `status`, returned by `rpc`.
    pub fn rpc(rpc: &'static str, status: &tonic::Status) -> ModalError {
        ModalError::Rpc {
            rpc,
            kind: ErrorKind::of(status.code()),
            code: status.code(),
            message: status.message().chars().take(2000).collect(),
        }
    }

    /// The failure's class, for RPC failures.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ModalError::Rpc { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the RPC said NotFound.
    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(ErrorKind::NotFound)
    }
}
