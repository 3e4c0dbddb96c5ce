//! A run's limits at the gateway: budget (cost and tokens), the model
//! allowlist and the request rate.

use errand_gateway::{GatewayEvent, Limits, Protocol};
use serde_json::Value;

use crate::support::*;

fn budget_reason(event: GatewayEvent) -> String {
    match event {
        GatewayEvent::BudgetExceeded { reason } => reason,
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn a_call_crossing_the_token_budget_stops_the_next_request() -> TestResult {
    let mut f = fixture(Limits {
        max_tokens: Some(10),
        ..Limits::default()
    })
    .await?;
    let call = anthropic("claude-sonnet-4-5", true);
    let (status, _, body) = send(&f.url, &call, f.key.secret()).await?;
    assert_eq!(status, 200);
    let used = reported_usage(Protocol::Anthropic, &body, true);
    let total =
        used.input_tokens + used.output_tokens + used.cache_read_tokens + used.cache_write_tokens;
    assert!(
        total >= 10,
        "the scripted answer is expected to use more than 10 tokens"
    );
    next_call(&mut f.events).await;
    // Sent as soon as the call completed, before any further request.
    let reason = budget_reason(next_event(&mut f.events).await);
    assert_eq!(reason, format!("budget exceeded ({total} of 10 tokens)"));

    for _ in 0..2 {
        let (status, _, body) = send(&f.url, &call, f.key.secret()).await?;
        assert_eq!(status, 400, "{body}");
        let v: Value = serde_json::from_str(&body)?;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], format!("errand: {reason}"));
        let refused = next_call(&mut f.events).await;
        assert_eq!(
            (refused.status, refused.error.as_deref()),
            (400, Some(&*format!("errand: {reason}")))
        );
    }
    assert!(
        f.events.try_recv().is_err(),
        "BudgetExceeded is sent once per run"
    );
    assert_eq!(
        f.model.requests().len(),
        1,
        "refused requests never reach the provider"
    );
    Ok(())
}

#[tokio::test]
async fn the_cost_budget_refuses_in_each_provider_shape() -> TestResult {
    let mut f = fixture(Limits {
        max_cost_usd: Some(0.000_001),
        ..Limits::default()
    })
    .await?;
    assert_eq!(
        send(&f.url, &responses("gpt-5", false), f.key.secret())
            .await?
            .0,
        200
    );
    let cost = next_call(&mut f.events).await.usage.cost_usd.unwrap();
    assert!(cost >= 0.000_001);
    let reason = budget_reason(next_event(&mut f.events).await);
    assert_eq!(reason, format!("budget exceeded (${cost:.2} of $0.00)"));

    let (status, _, body) = send(&f.url, &chat("gpt-5", true), f.key.secret()).await?;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert_eq!(v["error"]["message"], format!("errand: {reason}"));
    let (status, _, body) = send(&f.url, &gemini("gemini-2.5-pro", true), f.key.secret()).await?;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(f.model.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_model_off_the_allowlist_is_refused_and_recorded() -> TestResult {
    let mut f = fixture(Limits {
        models: Some(vec!["claude-haiku-4-5".into(), "gemini-2.5-*".into()]),
        ..Limits::default()
    })
    .await?;
    let (status, _, body) =
        send(&f.url, &anthropic("claude-opus-4", false), f.key.secret()).await?;
    assert_eq!(status, 403);
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["type"], "permission_error");
    let message =
        "model claude-opus-4 is not allowed for this run (allowed: claude-haiku-4-5, gemini-2.5-*)";
    assert_eq!(v["error"]["message"], message);
    let call = next_call(&mut f.events).await;
    assert_eq!((call.status, call.model.as_str()), (403, "claude-opus-4"));
    assert_eq!(call.error.as_deref(), Some(message));

    // Gemini names the model in the path.
    let (status, _, body) = send(&f.url, &gemini("gemini-3-pro", false), f.key.secret()).await?;
    assert_eq!(status, 403);
    assert!(error_message(&body).starts_with("model gemini-3-pro is not allowed"));
    assert!(f.model.requests().is_empty());
    // Allowed ones pass, exact and by prefix.
    assert_eq!(
        send(
            &f.url,
            &anthropic("claude-haiku-4-5", false),
            f.key.secret()
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        send(&f.url, &gemini("gemini-2.5-flash", true), f.key.secret())
            .await?
            .0,
        200
    );
    Ok(())
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() -> TestResult {
    let f = fixture(Limits {
        requests_per_minute: Some(2),
        ..Limits::default()
    })
    .await?;
    for _ in 0..2 {
        assert_eq!(
            send(&f.url, &responses("gpt-5", false), f.key.secret())
                .await?
                .0,
            200
        );
    }
    let (status, headers, body) = send(&f.url, &responses("gpt-5", false), f.key.secret()).await?;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&wait));
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(f.model.requests().len(), 2);
    Ok(())
}
