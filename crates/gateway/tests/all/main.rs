//! The gateway's integration tests (one binary).
