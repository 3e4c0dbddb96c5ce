//! errand's domain model: what a run is, the states it moves through, and the
//! harness-neutral event schema every harness is normalized into.
//!
//! Invariant: this crate does no I/O, so nothing in it can fail for reasons
//! outside its inputs.

#![warn(missing_docs)]

pub mod event;
pub mod redact;
pub mod run;

pub use event::{Event, EventKind, EventSource, ModelCall, Usage};
pub use redact::Redactor;
pub use run::{
    check_branch_name, InvalidTransition, Naming, Origin, RepoSource, ReviewSpot, RunId, RunRecord,
    RunSpec, RunState, RunSummary, ThreadRef, Transition,
};
