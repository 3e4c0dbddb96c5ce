//! errand's Modal client and the Modal sandbox backend, over Modal's own
//! gRPC API (the pinned protos of `proto/`), used the way the official Go
//! SDK v0.9.0 uses it.
//!
//! **Tested against the strict fake of [`fake`] (built from the same protos),
//! not against Modal itself.** Modal's protos carry no compatibility
//! guarantee for direct use: errand pins them.

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod config;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod router;
pub mod sandbox;

pub use client::Client;
pub use config::{Endpoint, Profile};
pub use error::{ErrorKind, ModalError};

/// Modal's generated protocol types and gRPC clients.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// `package modal.client`.
    pub mod client {
        tonic::include_proto!("modal.client");
    }
    /// `package modal.task_command_router`.
    pub mod task_command_router {
        tonic::include_proto!("modal.task_command_router");
    }
}
pub use sandbox::{ModalConfig, ModalSandbox};
