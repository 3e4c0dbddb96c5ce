//! errand's scripted model for tests: started on a free loopback port, and
//! the variables that point each harness CLI at it.

use errand_model::{Scenario, ScriptedModel};

/// Starts the scripted model on `127.0.0.1` (a free port) playing `scenario`
/// (its JSON form). Panics on a bad scenario: that is a mistake in the test.
pub async fn start(scenario: &str) -> ScriptedModel {
    let sc = Scenario::from_json(scenario)
        .unwrap_or_else(|e| panic!("the test's scenario is not valid: {e}"));
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    ScriptedModel::start(sc, listen)
        .await
        .unwrap_or_else(|e| panic!("the scripted model could not start: {e}"))
}

/// [`start`], keeping each Messages request's body (`model.log().bodies()`),
/// for tests that check what the harness sent the model.
pub async fn start_recording(scenario: &str) -> ScriptedModel {
    let sc = Scenario::from_json(scenario)
        .unwrap_or_else(|e| panic!("the test's scenario is not valid: {e}"));
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    ScriptedModel::start_with_log(sc, listen, errand_model::RequestLog::keeping_bodies())
        .await
        .unwrap_or_else(|e| panic!("the scripted model could not start: {e}"))
}

/// Points Claude Code at `model` (Anthropic Messages API), with a test key.
pub fn anthropic_vars(model: &ScriptedModel) -> [(String, String); 2] {
    [
        ("ANTHROPIC_BASE_URL".into(), model.base_url()),
        ("ANTHROPIC_API_KEY".into(), "sk-test-e2e-0123456789".into()),
    ]
}

/// Points Codex and OpenCode at `model` (OpenAI Responses API), with a test key.
pub fn openai_vars(model: &ScriptedModel) -> [(String, String); 2] {
    [
        ("OPENAI_BASE_URL".into(), model.openai_base_url()),
        ("OPENAI_API_KEY".into(), "sk-test-openai-0123456789".into()),
    ]
}

/// Points Gemini CLI at `model` (Gemini API), with a test key.
pub fn gemini_vars(model: &ScriptedModel) -> [(String, String); 2] {
    [
        ("GOOGLE_GEMINI_BASE_URL".into(), model.base_url()),
        ("GEMINI_API_KEY".into(), "sk-test-gemini-0123456789".into()),
    ]
}
