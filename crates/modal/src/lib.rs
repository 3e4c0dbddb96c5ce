//! errand's Modal client.

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
