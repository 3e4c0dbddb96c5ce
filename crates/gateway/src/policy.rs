//! Budget, model allowlist and request rate per run.
//!
//! - Budget: a request is refused once the run's recorded totals have
//!   reached `max_cost_usd` or `max_tokens`. Calls in flight when the limit
//!   is reached still finish (their tokens are already spent), so a run may
//!   end slightly over its budget. Calls whose model errand cannot price add
//!   nothing to the cost (their tokens still count).
//! - Allowlist: entries are exact model names or prefixes ending in `*`.
//!   A request naming no model (e.g. `GET /v1/models`) is not checked.
//! - Rate: at most `requests_per_minute` admitted requests in any sliding
//!   60-second window; refused requests do not count.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::Refusal;
use crate::{Limits, Usage};

const WINDOW: Duration = Duration::from_secs(60);

/// What a run has used so far.
#[derive(Default)]
pub(crate) struct Book {
    /// The sum of the run's recorded calls.
    pub(crate) totals: Usage,
    /// [`crate::GatewayEvent::BudgetExceeded`] was sent.
    pub(crate) budget_reported: bool,
    /// When the requests admitted in the last minute were admitted.
    admitted: VecDeque<Instant>,
}

impl Book {
    /// Add one call's usage to the totals.
    pub(crate) fn add(&mut self, usage: &Usage) {
        let t = &mut self.totals;
        t.input_tokens += usage.input_tokens;
        t.output_tokens += usage.output_tokens;
        t.cache_read_tokens += usage.cache_read_tokens;
        t.cache_write_tokens += usage.cache_write_tokens;
        if let Some(cost) = usage.cost_usd {
            t.cost_usd = Some(t.cost_usd.unwrap_or(0.0) + cost);
        }
    }

    /// Admit one request under `limit` per minute, or say how long to wait.
    pub(crate) fn admit(&mut self, limit: Option<u32>, now: Instant) -> Result<(), Refusal> {
        let Some(limit) = limit else {
            return Ok(());
        };
        while let Some(&first) = self.admitted.front() {
            if now.saturating_duration_since(first) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        if self.admitted.len() < limit as usize {
            self.admitted.push_back(now);
            return Ok(());
        }
        let wait = self
            .admitted
            .front()
            .map(|&first| WINDOW.saturating_sub(now.saturating_duration_since(first)))
            .unwrap_or(WINDOW);
        Err(Refusal::RateLimited {
            limit,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }
}

/// All tokens a usage counts (input, output, cache reads and writes).
pub fn total_tokens(usage: &Usage) -> u64 {
    usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens
}

/// `budget exceeded (...)` when `totals` reached one of the limits.
pub fn budget_reason(limits: &Limits, totals: &Usage) -> Option<String> {
    if let Some(max) = limits.max_cost_usd {
        let spent = totals.cost_usd.unwrap_or(0.0);
        if spent >= max {
            return Some(format!("budget exceeded (${spent:.2} of ${max:.2})"));
        }
    }
    if let Some(max) = limits.max_tokens {
        let used = total_tokens(totals);
        if used >= max {
            return Some(format!("budget exceeded ({used} of {max} tokens)"));
        }
    }
    None
}

/// Whether `model` is on the allowlist (`None` allows every model).
pub fn model_allowed(allow: Option<&[String]>, model: &str) -> bool {
    let Some(allow) = allow else {
        return true;
    };
    allow.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => entry == model,
    })
}

/// The refusal for a model not on the allowlist.
pub fn not_allowed(allow: &[String], model: &str) -> Refusal {
    Refusal::ModelNotAllowed(format!(
        "model {model} is not allowed for this run (allowed: {})",
        allow.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_exact_and_prefix() {
        let allow = vec!["claude-sonnet-4-5".to_string(), "gpt-5*".to_string()];
        assert!(model_allowed(Some(&allow), "claude-sonnet-4-5"));
        assert!(!model_allowed(Some(&allow), "claude-sonnet-4-5-20250929"));
        assert!(model_allowed(Some(&allow), "gpt-5-codex"));
        assert!(!model_allowed(Some(&allow), "o4-mini"));
        assert!(model_allowed(None, "anything"));
        let msg = not_allowed(&allow, "o4-mini").to_string();
        assert_eq!(
            msg,
            "model o4-mini is not allowed for this run (allowed: claude-sonnet-4-5, gpt-5*)"
        );
    }

    #[test]
    fn budget_reasons() {
        let limits = Limits {
            max_cost_usd: Some(1.5),
            max_tokens: Some(100),
            ..Limits::default()
        };
        let mut t = Usage::default();
        assert_eq!(budget_reason(&limits, &t), None);
        t.cost_usd = Some(1.5);
        assert_eq!(
            budget_reason(&limits, &t).as_deref(),
            Some("budget exceeded ($1.50 of $1.50)")
        );
        t.cost_usd = Some(0.2);
        t.input_tokens = 60;
        t.cache_read_tokens = 40;
        assert_eq!(
            budget_reason(&limits, &t).as_deref(),
            Some("budget exceeded (100 of 100 tokens)")
        );
    }

    #[test]
    fn rate_limit_slides() {
        let mut book = Book::default();
        let t0 = Instant::now();
        assert!(book.admit(Some(2), t0).is_ok());
        assert!(book.admit(Some(2), t0 + Duration::from_secs(10)).is_ok());
        match book.admit(Some(2), t0 + Duration::from_secs(20)) {
            Err(Refusal::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 40),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(book.admit(Some(2), t0 + Duration::from_secs(60)).is_ok());
        assert!(book.admit(None, t0).is_ok());
    }

    #[test]
    fn totals_add_cost_only_when_priced() {
        let mut book = Book::default();
        book.add(&Usage {
            input_tokens: 3,
            ..Usage::default()
        });
        assert_eq!(book.totals.cost_usd, None);
        book.add(&Usage {
            output_tokens: 2,
            cost_usd: Some(0.25),
            ..Usage::default()
        });
        assert_eq!(book.totals.cost_usd, Some(0.25));
        assert_eq!(total_tokens(&book.totals), 5);
    }
}
