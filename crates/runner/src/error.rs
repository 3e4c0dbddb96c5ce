//! Why a run ended without succeeding: one enum, whose message is the reason
//! errand records on the run, and which decides the state the run ends in.

use errand_core::RunState;
use errand_store::StoreError;

/// Why a run stopped. `Display` is the reason recorded on the run (and shown
/// in Slack, GitHub and the viewer); [`RunError::state`] is the state it ends in.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request cannot run as given: its flags, its repository, or what
    /// this errand is configured for.
    #[error("{0}")]
    Invalid(String),
    /// The harness: unknown, not installable, no key for it, or it failed.
    #[error("{0}")]
    Harness(String),
    /// The sandbox could not be set up, started or waited for.
    #[error("{0}")]
    Sandbox(String),
    /// git work: the clone, the export of the run's branch, the push.
    #[error("{0}")]
    Git(String),
    /// The forge: the run's token, the pull request.
    #[error("{0}")]
    Forge(String),
    /// errand's own files, secrets and store.
    #[error("{0}")]
    Host(String),
    /// The run's events could not be written.
    #[error("could not write the event log: {0}")]
    Log(#[source] StoreError),
    /// The run's deadline passed: while the agent worked (`after` its
    /// timeout), or in a step after it.
    #[error("{}", timed_out(*after))]
    TimedOut {
        /// The timeout, when it was the agent that was stopped.
        after: Option<u64>,
    },
    /// The run's model requests reached its budget (`--max-cost`,
    /// `--max-tokens`): the gateway refused the next one and errand stopped the
    /// agent. The reason reads "budget exceeded ($X of $Y)".
    #[error("{0}")]
    Budget(String),
    /// errand itself was interrupted (Ctrl-C, SIGTERM).
    #[error("cancelled (errand run was interrupted: Ctrl-C or SIGTERM)")]
    Interrupted,
    /// Someone asked for the run to stop (`errand cancel`, the API, Slack).
    #[error("cancelled by `errand cancel`")]
    CancelRequested,
}

fn timed_out(after: Option<u64>) -> String {
    match after {
        Some(secs) => format!(
            "timed out after {} (the run's --timeout); the agent was stopped",
            crate::human_secs(secs)
        ),
        None => "timed out (the run's --timeout): errand stopped the sandbox".into(),
    }
}

macro_rules! constructors {
    ($($name:ident => $variant:ident),* $(,)?) => {
        $(
            #[doc = concat!("A [`RunError::", stringify!($variant), "`] with this reason.")]
            pub fn $name(reason: impl Into<String>) -> Self {
                RunError::$variant(reason.into())
            }
        )*
    };
}

impl RunError {
    constructors!(
        invalid => Invalid,
        harness => Harness,
        sandbox => Sandbox,
        git => Git,
        forge => Forge,
        host => Host,
    );

    /// The state a run stopped by this error ends in.
    pub fn state(&self) -> RunState {
        match self {
            RunError::TimedOut { .. } => RunState::TimedOut,
            RunError::Interrupted | RunError::CancelRequested => RunState::Cancelled,
            _ => RunState::Failed,
        }
    }
}

impl From<errand_sandbox::SandboxError> for RunError {
    fn from(e: errand_sandbox::SandboxError) -> Self {
        RunError::Sandbox(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_ends_the_run_in_its_state_with_its_reason() {
        assert_eq!(
            RunError::TimedOut { after: None }.state(),
            RunState::TimedOut
        );
        assert_eq!(RunError::Interrupted.state(), RunState::Cancelled);
        assert_eq!(RunError::CancelRequested.state(), RunState::Cancelled);
        assert_eq!(RunError::Git("x".into()).state(), RunState::Failed);
        assert_eq!(
            RunError::TimedOut { after: Some(120) }.to_string(),
            "timed out after 2m (the run's --timeout); the agent was stopped"
        );
        assert_eq!(RunError::Invalid("no".into()).to_string(), "no");
    }
}
