//! The integration tests of errand-server, one test binary (linking the crate once).

mod newrun;
mod openapi;
mod scopes;
mod sse;
mod store_errors;
