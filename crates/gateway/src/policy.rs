//! Budget, model allowlist and request rate per run.

use crate::Usage;

/// What a run has used so far.
#[derive(Default)]
pub(crate) struct Book {
    /// The sum of the run's recorded calls.
    pub(crate) totals: Usage,
    /// [`crate::GatewayEvent::BudgetExceeded`] was sent.
    pub(crate) budget_reported: bool,
}
