//! Estimated cost of a run from its token usage, for harnesses that report
//! none (Codex). Claude Code reports its own `total_cost_usd`; prefer that.
//!
//! Prices are list prices in USD per million tokens, for standard (not
//! batch, not priority) processing, as the providers' pricing pages listed
//! them in **October 2025**. They were not re-checked since and will drift:
//! treat the result as an estimate, and update the table (and this date)
//! when prices change.
//!
//! | model | input | cached input (read) | cache write | output |
//! |---|---|---|---|---|
//! | `gpt-5` | 1.25 | 0.125 | (input) | 10.00 |
//! | `gpt-5-codex` | 1.25 | 0.125 | (input) | 10.00 |
//! | `gpt-5-mini` | 0.25 | 0.025 | (input) | 2.00 |
//! | `o4-mini` | 1.10 | 0.275 | (input) | 4.40 |
//! | `claude-sonnet-4-5` | 3.00 | 0.30 | 3.75 | 15.00 |
//! | `claude-opus-4` | 15.00 | 1.50 | 18.75 | 75.00 |
//! | `claude-haiku-4-5` | 1.00 | 0.10 | 1.25 | 5.00 |
//! | `gemini-2.5-pro` | 1.25 | 0.125 | (input) | 10.00 |
//! | `gemini-2.5-flash` | 0.30 | 0.03 | (input) | 2.50 |
//!
//! Notes: Anthropic cache writes are the 5-minute TTL price. Gemini 2.5 Pro
//! prices are those for prompts up to 200k tokens (longer prompts cost more;
//! not modelled); Gemini's cache storage fee is not modelled. OpenAI and
//! Google charge no separate cache-write price, so cache-write tokens are
//! priced as input.
//!
//! `Usage` counts fresh input, cache reads and cache writes apart (Claude's
//! convention, which the Codex parser follows), so the cost is the sum of
//! each count times its price.

use errand_core::Usage;

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// The model id as the provider names it (without a date suffix).
    pub model: &'static str,
    /// Fresh (uncached) input.
    pub input: f64,
    /// Input read from the prompt cache.
    pub cached_input: f64,
    /// Input written to the prompt cache.
    pub cache_write: f64,
    /// Output, including reasoning tokens.
    pub output: f64,
}

const fn price(
    model: &'static str,
    input: f64,
    cached_input: f64,
    cache_write: f64,
    output: f64,
) -> ModelPrice {
    ModelPrice {
        model,
        input,
        cached_input,
        cache_write,
        output,
    }
}

/// The price table (October 2025 list prices; see the module docs).
pub const PRICES: [ModelPrice; 11] = [
    price("gpt-5", 1.25, 0.125, 1.25, 10.0),
    price("gpt-5-codex", 1.25, 0.125, 1.25, 10.0),
    price("gpt-5-mini", 0.25, 0.025, 0.25, 2.0),
    price("o4-mini", 1.10, 0.275, 1.10, 4.40),
    price("claude-sonnet-4-5", 3.0, 0.30, 3.75, 15.0),
    price("claude-opus-4", 15.0, 1.50, 18.75, 75.0),
    // Opus 4.5 and later list at $5/$25; Claude Code 2.1's default, opus-4-8,
    // is priced so by Claude Code itself (its total_cost_usd on real runs).
    price("claude-opus-4-5", 5.0, 0.50, 6.25, 25.0),
    price("claude-opus-4-8", 5.0, 0.50, 6.25, 25.0),
    price("claude-haiku-4-5", 1.0, 0.10, 1.25, 5.0),
    price("gemini-2.5-pro", 1.25, 0.125, 1.25, 10.0),
    price("gemini-2.5-flash", 0.30, 0.03, 0.30, 2.50),
];

/// The price entry for `model`, if the table has it.
///
/// Matching ignores ASCII case and a provider prefix (`openai/gpt-5`), and
/// accepts a snapshot suffix after the table's id: a date (`-20250929`,
/// `-2025-08-07`, `@20250929`) or `-latest`. Any other suffix is another
/// model (`gpt-5-nano` is not `gpt-5`), so it gets `None`.
pub fn model_price(model: &str) -> Option<&'static ModelPrice> {
    let name = model.trim().to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name);
    // Claude Code names a long-context variant `model[1m]`: same price table entry.
    let name = match name.find('[') {
        Some(i) if name.ends_with(']') => &name[..i],
        _ => name,
    };
    PRICES.iter().find(|p| {
        name.strip_prefix(p.model)
            .is_some_and(|rest| rest.is_empty() || is_snapshot_suffix(rest))
    })
}

/// `-YYYYMMDD`, `-YYYY-MM-DD`, `@YYYYMMDD` or `-latest`.
fn is_snapshot_suffix(rest: &str) -> bool {
    if rest == "-latest" {
        return true;
    }
    let Some(date) = rest.strip_prefix('-').or_else(|| rest.strip_prefix('@')) else {
        return false;
    };
    let digits = date.chars().filter(char::is_ascii_digit).count();
    let compact = date.len() == 8 && digits == 8;
    let dashed = date.len() == 10
        && digits == 8
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    compact || dashed
}

/// Estimated cost in USD of `usage` on `model`; `None` for a model the table
/// does not know.
pub fn estimate_cost_usd(model: &str, usage: &Usage) -> Option<f64> {
    let p = model_price(model)?;
    let million = 1_000_000.0;
    let cost = usage.input_tokens as f64 * p.input
        + usage.cache_read_tokens as f64 * p.cached_input
        + usage.cache_write_tokens as f64 * p.cache_write
        + usage.output_tokens as f64 * p.output;
    Some(cost / million)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            cost_usd: None,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn one_million_of_each_costs_the_listed_prices() {
        let m = 1_000_000;
        assert!(close(estimate_cost_usd("gpt-5", &usage(m, 0, 0, 0)), 1.25));
        assert!(close(estimate_cost_usd("gpt-5", &usage(0, m, 0, 0)), 0.125));
        assert!(close(estimate_cost_usd("gpt-5", &usage(0, 0, 0, m)), 10.0));
        assert!(close(
            estimate_cost_usd("claude-sonnet-4-5", &usage(m, m, m, m)),
            3.0 + 0.30 + 3.75 + 15.0
        ));
        assert!(close(
            estimate_cost_usd("gemini-2.5-flash", &usage(2 * m, 0, 0, m)),
            0.60 + 2.50
        ));
        assert!(close(estimate_cost_usd("o4-mini", &usage(0, 0, 0, 0)), 0.0));
    }

    #[test]
    fn every_table_model_is_found_by_its_own_id() {
        for p in &PRICES {
            assert_eq!(model_price(p.model).map(|f| f.model), Some(p.model));
            assert!(p.input > 0.0 && p.output > p.input && p.cached_input < p.input);
        }
    }

    #[test]
    fn snapshots_and_prefixes_match_other_models_do_not() {
        let found = |m: &str| model_price(m).map(|p| p.model);
        assert_eq!(
            found("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            found("claude-sonnet-4-5@20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(found("claude-opus-4-20250514"), Some("claude-opus-4"));
        assert_eq!(found("gpt-5-2025-08-07"), Some("gpt-5"));
        assert_eq!(found("o4-mini-2025-04-16"), Some("o4-mini"));
        assert_eq!(found("openai/GPT-5-Codex"), Some("gpt-5-codex"));
        assert_eq!(found("gpt-5-mini"), Some("gpt-5-mini"));
        assert_eq!(found("gemini-2.5-pro"), Some("gemini-2.5-pro"));
        assert_eq!(found("claude-haiku-4-5-latest"), Some("claude-haiku-4-5"));
        for other in [
            "gpt-5-nano",
            "gpt-5.5",
            "claude-opus-4-1",
            "gemini-2.5-flash-lite",
            "mock-model",
            "",
            "gpt-5-2025-8-7",
        ] {
            assert_eq!(found(other), None, "{other}");
            assert_eq!(estimate_cost_usd(other, &usage(1, 1, 1, 1)), None);
        }
    }
}
