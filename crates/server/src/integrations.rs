//! Slack and GitHub as ways to start and follow runs.
//!
//! * `POST /slack/commands`: `/agent [--push] [--harness H] [--model M]
//!   [--base B] owner/repo instruction…`, `/agent help|status|cancel ID`;
//! * `POST /slack/interactions`: the run card's Cancel button;
//! * `POST /slack/events`: a reply in a run's thread continues the run;
//! * `POST /github/webhook`: an `@errand …` comment on an issue or pull request.
//!
//! Every request is verified (Slack's v0 signature, GitHub's
//! `X-Hub-Signature-256`) before its body is read, then checked against the
//! [`AccessPolicy`]; refusals create nothing. Runs report back through
//! [`Notifier`], which the worker that executes them calls on each state.
//!
//! A signed request is acted on once: its replay key is recorded in the store
//! ([`errand_store::Store::first_time`], shared by every node and kept across
//! restarts) before anything happens, and a request whose key is already there
//! is answered without effect. Slack commands are keyed by `trigger_id`,
//! events by `event_id`, interactions by `trigger_id` (else the body); GitHub
//! deliveries by the SHA-256 of the signed body, never by the unsigned
//! `X-GitHub-Delivery` header.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use errand_core::{Origin, RepoSource, RunId, RunRecord, RunSpec, RunState};
use errand_runner::GithubForge;
use errand_slack::{
    AgentCommand, EventEnvelope, Interaction, Message, RunCard, SlackClient, SlashCommand,
};
use errand_store::RunFilter;
use serde_json::json;
use tokio::sync::mpsc;

use crate::access::{AccessPolicy, Requester};
use crate::AppState;

/// Slack's side: the app's signing secret and its bot.
pub struct SlackIntegration {
    /// The secret Slack signs requests with.
    pub signing_secret: String,
    /// The Web API client, as the app's bot.
    pub client: SlackClient,
}

/// GitHub's side: the webhook secret, the handle people mention, the App.
pub struct GithubIntegration {
    /// The secret GitHub signs webhook deliveries with.
    pub webhook_secret: String,
    /// `@errand` by default.
    pub mention: String,
    /// The App: tokens, pull requests and comments.
    pub forge: Arc<GithubForge>,
    /// A label that starts a run on the issue it is added to (`github.label`); `None`: none does.
    pub label: Option<String>,
    /// How many times errand tries to fix a failed check on its own pull
    /// request (`github.fix_ci` and `github.fix_ci_attempts`); 0: never.
    pub fix_ci_attempts: u32,
}

/// Everything the Slack and GitHub routes need.
pub struct Integrations {
    /// The viewer's public address, for links (`https://errand.example`).
    pub public_url: String,
    /// Slack, when configured.
    pub slack: Option<SlackIntegration>,
    /// GitHub, when configured.
    pub github: Option<GithubIntegration>,
    /// Who may start runs (and push) from Slack and GitHub.
    pub access: AccessPolicy,
    /// The harness a run uses when the request names none.
    pub default_harness: String,
}

/// How long a Slack request's replay key is kept: far past Slack's five-minute
/// signature window, so a request can never be valid again once forgotten.
pub const SLACK_REPLAY_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The answer to a Slack request already acted on.
const ALREADY_RECEIVED: &str = "This command was already received.";

/// How long a GitHub delivery's body hash is kept. GitHub signs no timestamp,
/// so a captured delivery stays valid for ever; comments older than this are
/// refused instead ([`github_webhook`]), which closes the gap after it.
pub const GITHUB_REPLAY_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether this is the first time any node sees `key`; `None` when the store
/// could not tell (the caller then acts on nothing).
pub(crate) async fn first_time(st: &AppState, key: &str, keep: Duration) -> Option<bool> {
    match st.store.first_time(key, chrono::Utc::now(), keep).await {
        Ok(first) => {
            if !first {
                tracing::warn!(key, "refused a replayed request");
            }
            Some(first)
        }
        Err(e) => {
            tracing::error!("recording a replay key failed: {e}");
            None
        }
    }
}

/// SHA-256 of `body`, hex.
fn body_hash(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Integrations {
    /// The viewer's page of run `id`.
    pub fn run_url(&self, id: RunId) -> String {
        format!("{}/runs/{id}", self.public_url.trim_end_matches('/'))
    }
}

fn ephemeral(text: impl Into<String>) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": text.into() })).into_response()
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (status, text.into()).into_response()
}

/// A request refused before it was read: status and a plain-text reason.
type Refusal = (StatusCode, String);

fn not_configured(what: &str) -> Refusal {
    (
        StatusCode::NOT_FOUND,
        format!("{what} is not configured on this errand server"),
    )
}

/// The integrations, when Slack is configured and the request carries Slack's
/// valid signature over exactly these bytes; otherwise the refusal to send.
fn from_slack(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Arc<Integrations>, Refusal> {
    let Some(int) = st.integrations.clone().filter(|i| i.slack.is_some()) else {
        return Err(not_configured("Slack"));
    };
    let secret = int
        .slack
        .as_ref()
        .map(|s| s.signing_secret.as_str())
        .unwrap_or("");
    errand_slack::verify_request(secret, headers, body, errand_slack::now_unix()).map_err(|e| {
        tracing::warn!("refused a Slack request: {e}");
        (StatusCode::UNAUTHORIZED, e.to_string())
    })?;
    Ok(int)
}

fn slack_requester(team: &str, user: &str) -> String {
    format!("slack:{team}/{user}")
}

/// `POST /slack/commands`.
pub async fn slack_command(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let int = match from_slack(&st, &headers, &body) {
        Ok(int) => int,
        Err(r) => return r.into_response(),
    };
    let cmd = match SlashCommand::from_form(&body) {
        Ok(c) => c,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let key = if cmd.trigger_id.is_empty() {
        format!("slack:cmd-body:{}", body_hash(&body))
    } else {
        format!("slack:cmd:{}", cmd.trigger_id)
    };
    let parsed = cmd.agent_command();
    // A run that needs nothing fetched first records its replay key with the
    // run, one durable write before the acknowledgement instead of two; any
    // other command records its key before it acts.
    let key_with_run = matches!(&parsed, Ok(AgentCommand::Run(r)) if r.thread.is_none());
    if !key_with_run {
        match first_time(&st, &key, SLACK_REPLAY_KEEP).await {
            Some(true) => {}
            Some(false) => return ephemeral(ALREADY_RECEIVED),
            None => return ephemeral("errand could not record this command; try again."),
        }
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return ephemeral(format!("{e}\n\n{}", errand_slack::usage())),
    };
    let who = Requester::Slack {
        team: &cmd.team_id,
        channel: &cmd.channel_id,
        user: &cmd.user_id,
    };
    match parsed {
        AgentCommand::Help => ephemeral(errand_slack::usage()),
        AgentCommand::Status => slack_status(&st, &cmd).await,
        AgentCommand::Cancel { id } => {
            match cancel_for(&st, &int, who, &id, "cancelled from Slack").await {
                Ok(rec) => ephemeral(format!("Cancelling run {}.", rec.id.short())),
                Err(msg) => ephemeral(msg),
            }
        }
        AgentCommand::Run(req) => {
            if let Err(denied) = int.access.check(who, &req.repo, req.push) {
                return ephemeral(denied.to_string());
            }
            let harness = req
                .harness
                .clone()
                .unwrap_or_else(|| int.default_harness.clone());
            let h = match st.harnesses.get(&harness) {
                Ok(h) => h,
                Err(e) => return ephemeral(e.to_string()),
            };
            if req.model.is_some() && !h.capabilities().model_choice {
                return ephemeral(format!(
                    "{harness} does not let errand choose the model: drop --model"
                ));
            }
            let mut spec = RunSpec::new(req.instruction.clone(), harness);
            spec.repo = Some(RepoSource::Github(req.repo.clone()));
            spec.model = req.model.clone();
            spec.push = req.push;
            spec.base_branch = req.base.clone();
            spec.requested_by = Some(slack_requester(&cmd.team_id, &cmd.user_id));
            spec.origin = Some(Origin::Slack {
                team: cmd.team_id.clone(),
                channel: cmd.channel_id.clone(),
                user: cmd.user_id.clone(),
                message_ts: None,
            });
            if let Some(t) = &req.thread {
                if let Err(msg) = slack_thread(&int, &req.repo, t, &mut spec).await {
                    return ephemeral(msg);
                }
            }
            if let Err(msg) = int.access.limits(who, &req.repo, req.push).apply(&mut spec) {
                return ephemeral(msg);
            }
            let id = RunId::new();
            let created = if key_with_run {
                st.store
                    .create_run_once(&key, chrono::Utc::now(), SLACK_REPLAY_KEEP, id, &spec)
                    .await
            } else {
                st.store.create_run(id, &spec).await.map(Some)
            };
            let rec = match created {
                Ok(Some(r)) => r,
                Ok(None) => {
                    tracing::warn!(key, "refused a replayed request");
                    return ephemeral(ALREADY_RECEIVED);
                }
                Err(e) => {
                    tracing::error!("creating a run from Slack failed: {e}");
                    return ephemeral(format!("errand could not queue the run: {e}"));
                }
            };
            tracing::info!(run = %rec.id, repo = %req.repo, "queued from Slack");
            // The channel message (with its Cancel button) is posted after the
            // acknowledgement, so Slack's 3-second deadline never waits on it.
            let int2 = int.clone();
            let store = st.store.clone();
            let rec2 = rec.clone();
            tokio::spawn(async move {
                post_run_card(&int2, store.as_ref(), &rec2).await;
            });
            ephemeral(format!(
                "Queued run {} on {}: {}",
                rec.id.short(),
                req.repo,
                int.run_url(rec.id)
            ))
        }
    }
}

/// A Slack request that names an issue or pull request by its address: the
/// run is given its context, and a pull request's run works on its branch
/// (when it pushes). The address must be the configured GitHub's; a pull
/// request from a fork is refused.
async fn slack_thread(
    int: &Integrations,
    repo: &str,
    t: &errand_slack::ThreadUrl,
    spec: &mut RunSpec,
) -> Result<(), String> {
    let Some(gh) = &int.github else {
        return Err("errand has no GitHub App configured, so it cannot read that issue".into());
    };
    let host = |url: &str| {
        url.split_once("://")
            .map(|(_, rest)| {
                rest.split('/')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    };
    let configured = host(&gh.forge.git_base);
    let named = t.host.trim_start_matches("www.");
    if named != configured.trim_start_matches("www.") {
        return Err(format!(
            "that address is on {}, and errand works with the GitHub at {configured}",
            t.host
        ));
    }
    let mut thread = errand_core::ThreadRef {
        number: t.number,
        pull_request: t.pull_request,
        request: None,
        request_author: None,
        request_id: None,
        review: None,
        head_branch: None,
    };
    if t.pull_request {
        let (owner, name) = repo.split_once('/').unwrap_or_default();
        let pull = gh.forge.pull(owner, name, t.number).await.map_err(|e| {
            format!(
                "errand could not read pull request #{} of {repo}: {e}",
                t.number
            )
        })?;
        if pull.is_from_fork(owner, name) {
            return Err(format!(
                "pull request #{} of {repo} comes from a fork: errand neither runs on code from forks nor pushes to them",
                t.number
            ));
        }
        if spec.push {
            thread.head_branch = Some(pull.head.branch.clone());
            spec.base_branch = Some(pull.head.branch);
        }
    }
    spec.thread = Some(thread);
    Ok(())
}

/// Posts the run's card in its channel and remembers the message, whose
/// thread then carries the run's updates and follow-ups.
async fn post_run_card(int: &Integrations, store: &dyn errand_store::Store, rec: &RunRecord) {
    let (
        Some(slack),
        Some(Origin::Slack {
            team,
            channel,
            user,
            ..
        }),
    ) = (&int.slack, &rec.spec.origin)
    else {
        return;
    };
    let msg = Message::run_card(channel.clone(), &card(int, rec, user));
    match slack.client.post_message(&msg).await {
        Ok(posted) => {
            let origin = Origin::Slack {
                team: team.clone(),
                channel: posted.channel,
                user: user.clone(),
                message_ts: Some(posted.ts),
            };
            if let Err(e) = store.set_origin(rec.id, &origin).await {
                tracing::error!(run = %rec.id, "recording the Slack message failed: {e}");
            }
        }
        Err(e) => tracing::error!(run = %rec.id, "posting the run to Slack failed: {e}"),
    }
}

/// The card for a run as it is now.
pub fn card(int: &Integrations, rec: &RunRecord, user: &str) -> RunCard {
    let s = &rec.summary;
    RunCard {
        run_id: rec.id.to_string(),
        short_id: rec.id.short(),
        repo: rec
            .spec
            .repo
            .as_ref()
            .map(|r| r.location().to_string())
            .unwrap_or_default(),
        instruction: rec.spec.prompt.clone(),
        requested_by: user.to_string(),
        viewer_url: int.run_url(rec.id),
        state: rec.state.as_str().to_string(),
        reason: rec.reason.clone(),
        pr_url: s.pr_url.clone(),
        branch: s.branch.clone(),
        diffstat: s.diffstat.clone().filter(|d| !d.is_empty()),
        turns: s.turns,
        cost_usd: s.cost_usd,
        duration_secs: rec.duration().map(|d| d.num_seconds().max(0) as u64),
        terminal: rec.state.is_terminal(),
    }
}

async fn slack_status(st: &AppState, cmd: &SlashCommand) -> Response {
    let filter = RunFilter {
        requested_by: Some(slack_requester(&cmd.team_id, &cmd.user_id)),
        limit: 10,
        ..Default::default()
    };
    match st.store.list_runs(&filter).await {
        Ok(runs) if runs.is_empty() => ephemeral("You have no runs yet."),
        Ok(runs) => {
            let lines: Vec<String> = runs
                .iter()
                .map(|r| {
                    format!(
                        "{} {} `{}` {}: {}",
                        errand_slack::blocks::state_emoji(r.state.as_str()),
                        r.state,
                        r.id.short(),
                        r.spec.repo.as_ref().map(|x| x.location()).unwrap_or("-"),
                        errand_slack::text::truncate(
                            &errand_slack::text::escape(&r.spec.prompt),
                            80
                        )
                    )
                })
                .collect();
            ephemeral(format!("Your recent runs:\n{}", lines.join("\n")))
        }
        Err(e) => ephemeral(format!("errand could not list runs: {e}")),
    }
}

/// Cancels run `id` for `who`: the person who started it, or anyone the
/// access rules let run on its repository.
async fn cancel_for(
    st: &AppState,
    int: &Integrations,
    who: Requester<'_>,
    id: &str,
    why: &str,
) -> Result<RunRecord, String> {
    let rec = st
        .store
        .find_run(id.trim_start_matches('#'))
        .await
        .map_err(|e| e.to_string())?;
    let repo = rec
        .spec
        .repo
        .as_ref()
        .map(|r| r.location().to_string())
        .unwrap_or_default();
    let own = match who {
        Requester::Slack { team, user, .. } => {
            rec.spec.requested_by.as_deref() == Some(&slack_requester(team, user))
        }
        Requester::Github { login } => {
            rec.spec.requested_by.as_deref() == Some(&format!("github:{login}"))
        }
    };
    if !own && int.access.check(who, &repo, false).is_err() {
        return Err(format!(
            "you may not cancel run {}: it is not yours and you have no access to {repo}",
            rec.id.short()
        ));
    }
    crate::api::cancel(st, rec, why)
        .await
        .map_err(|e| e.message)
}

/// `POST /slack/interactions`: the Cancel button.
pub async fn slack_interaction(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let int = match from_slack(&st, &headers, &body) {
        Ok(int) => int,
        Err(r) => return r.into_response(),
    };
    let action = match Interaction::from_form(&body) {
        Ok(a) => a,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let key = match action.trigger_id.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => format!("slack:interaction:{t}"),
        None => format!("slack:interaction-body:{}", body_hash(&body)),
    };
    if first_time(&st, &key, SLACK_REPLAY_KEEP).await != Some(true) {
        return StatusCode::OK.into_response();
    }
    let channel = action.channel_id.clone().unwrap_or_default();
    let who = Requester::Slack {
        team: &action.team_id,
        channel: &channel,
        user: &action.user_id,
    };
    let mut replies = Vec::new();
    for id in action.cancel_run_ids() {
        match cancel_for(&st, &int, who, id, "cancelled from Slack").await {
            Ok(rec) => {
                replies.push(format!("Cancelling run {}.", rec.id.short()));
                // A run cancelled before any worker took it gets no state
                // callback from a runner: refresh its card here.
                if rec.state.is_terminal() {
                    let int = int.clone();
                    tokio::spawn(async move { update_card(&int, &rec).await });
                }
            }
            Err(msg) => replies.push(msg),
        }
    }
    match (action.response_url.as_deref(), int.slack.as_ref()) {
        (Some(url), Some(slack)) if !replies.is_empty() => {
            let body = json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": replies.join("\n"),
            });
            let client = slack.client.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                if let Err(e) = client.respond(&url, &body).await {
                    tracing::warn!("answering a Slack button failed: {e}");
                }
            });
        }
        _ => {}
    }
    StatusCode::OK.into_response()
}

/// `POST /slack/events`: URL verification and replies in a run's thread.
pub async fn slack_event(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let int = match from_slack(&st, &headers, &body) {
        Ok(int) => int,
        Err(r) => return r.into_response(),
    };
    let envelope = match EventEnvelope::from_json(&body) {
        Ok(e) => e,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (event_id, team) = match &envelope {
        EventEnvelope::UrlVerification { challenge } => {
            return Json(json!({ "challenge": challenge })).into_response()
        }
        EventEnvelope::EventCallback {
            event_id, team_id, ..
        } => (event_id.clone(), team_id.clone()),
        EventEnvelope::Other { .. } => return StatusCode::OK.into_response(),
    };
    let Some(reply) = envelope.thread_reply().cloned() else {
        return StatusCode::OK.into_response();
    };
    // Slack retries deliveries it thinks failed: act once per event.
    if first_time(&st, &format!("slack:event:{event_id}"), SLACK_REPLAY_KEEP).await != Some(true) {
        return StatusCode::OK.into_response();
    }
    let st2 = st.clone();
    tokio::spawn(async move {
        thread_reply(&st2, &int, &team, &reply).await;
    });
    StatusCode::OK.into_response()
}

/// A reply in a run's thread: the next instruction for that run.
async fn thread_reply(
    st: &AppState,
    int: &Integrations,
    team: &str,
    reply: &errand_slack::ThreadReply,
) {
    let filter = RunFilter {
        slack_message: Some(reply.thread_ts.clone()),
        limit: 1,
        ..Default::default()
    };
    let Ok(Some(rec)) = st
        .store
        .list_runs(&filter)
        .await
        .map(|v| v.into_iter().next())
    else {
        return; // a thread that is not a run's: not for errand
    };
    let say = |text: String| {
        let msg = Message::new(reply.channel.clone(), text).in_thread(reply.thread_ts.clone());
        async move {
            if let Some(slack) = &int.slack {
                if let Err(e) = slack.client.post_message(&msg).await {
                    tracing::warn!("replying in a run's thread failed: {e}");
                }
            }
        }
    };
    let repo = rec
        .spec
        .repo
        .as_ref()
        .map(|r| r.location().to_string())
        .unwrap_or_default();
    let who = Requester::Slack {
        team,
        channel: &reply.channel,
        user: &reply.user,
    };
    if let Err(denied) = int.access.check(who, &repo, rec.spec.push) {
        say(format!("<@{}> {denied}", reply.user)).await;
        return;
    }
    let text = reply.plain_text();
    if text.trim().is_empty() {
        return;
    }
    match crate::api::continue_run(st, rec, &text).await {
        Ok(rec) => {
            say(format!(
                "Continuing run {} with <@{}>'s message.",
                rec.id.short(),
                reply.user
            ))
            .await
        }
        Err(e) => say(format!("Cannot continue this run: {}", e.message)).await,
    }
}

/// Whether the delivery is about a comment made longer ago than
/// [`GITHUB_REPLAY_KEEP`] (whose body hash may have been forgotten): a replay.
fn stale_comment(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let Some(created) = v
        .pointer("/comment/created_at")
        .and_then(|c| c.as_str())
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
    else {
        return false;
    };
    let keep = chrono::TimeDelta::from_std(GITHUB_REPLAY_KEEP).unwrap_or(chrono::TimeDelta::MAX);
    // An hour's grace for clocks and GitHub's own delays.
    chrono::Utc::now() - created.with_timezone(&chrono::Utc) > keep - chrono::TimeDelta::hours(1)
}

/// `POST /github/webhook`: `@errand …` in an issue or pull request comment.
pub async fn github_webhook(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(int) = st.integrations.clone() else {
        return not_configured("GitHub").into_response();
    };
    let Some(gh) = &int.github else {
        return not_configured("GitHub").into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = errand_github::webhook::verify_signature(
        gh.webhook_secret.as_bytes(),
        &body,
        header("x-hub-signature-256"),
    ) {
        tracing::warn!("refused a GitHub webhook: {e}");
        return plain(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let event = header("x-github-event").unwrap_or_default().to_string();
    // The delivery id is neither signed nor required: the signed body is the key.
    match first_time(
        &st,
        &format!("github:body:{}", body_hash(&body)),
        GITHUB_REPLAY_KEEP,
    )
    .await
    {
        Some(true) => {}
        Some(false) => return plain(StatusCode::OK, "already received"),
        None => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "errand could not record this delivery",
            )
        }
    }
    if stale_comment(&body) {
        tracing::warn!("refused a GitHub delivery for a comment older than its replay window");
        return plain(
            StatusCode::OK,
            "ignored: the comment is older than errand remembers deliveries",
        );
    }
    let parsed =
        errand_github::webhook::parse_event(&event, &body, &gh.mention, gh.label.as_deref());
    match parsed {
        Ok(Some(errand_github::Event::Mention(m))) => {
            crate::github::mention(&st, &int, gh, m).await
        }
        Ok(Some(errand_github::Event::Labeled(l))) => {
            crate::github::labeled(&st, &int, gh, l).await
        }
        Ok(Some(errand_github::Event::CheckFailed(f))) => {
            if gh.fix_ci_attempts == 0 {
                return plain(StatusCode::ACCEPTED, "ignored: github.fix_ci is off");
            }
            // Reading the check's log takes longer than GitHub waits for an answer.
            let (st, int) = (st.clone(), int.clone());
            tokio::spawn(async move { crate::github::check_failed(st, int, f).await });
            plain(StatusCode::ACCEPTED, "looking at the failed check")
        }
        Ok(None) => plain(StatusCode::ACCEPTED, "ignored: nothing for errand"),
        Err(e) => plain(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// The query GitHub redirects to `/github/manifest-callback` with.
#[derive(serde::Deserialize)]
pub struct ManifestCallback {
    code: Option<String>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /github/manifest-callback?code=…`: the end of the one-click App set-up.
/// GitHub redirects here after creating the App from `errand github
/// app-manifest`; errand exchanges the one-time code for the App's id, private
/// key and webhook secret and shows the `[github]` block to save, once. Nothing
/// is stored by the server.
pub async fn github_manifest_callback(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ManifestCallback>,
) -> Response {
    let Some(code) = q.code else {
        return plain(
            StatusCode::BAD_REQUEST,
            "missing ?code= (GitHub adds it after creating the App)",
        );
    };
    let app = match errand_github::convert_manifest(&st.github_api, &code).await {
        Ok(app) => app,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("GitHub did not create the App from this code: {e}"),
            )
        }
    };
    let block = format!(
        "[github]\napp_id = \"{}\"\nprivate_key_file = \"/etc/errand/github-app.pem\"   # save the key below there\nwebhook_secret = \"{}\"\n",
        app.id,
        app.webhook_secret.as_deref().unwrap_or("")
    );
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>errand: GitHub App created</title>\
         <h1>The GitHub App{} exists</h1>\
         <p>Add this to errand's configuration and restart errand. This page is shown once: \
         GitHub will not hand out this key again.</p><pre>{}</pre>\
         <p>The App's private key (save it as the file named above, readable only by errand):</p><pre>{}</pre>\
         <p>Then install the App on the repositories errand may work on.</p>",
        app.slug
            .as_deref()
            .map(|s| format!(" <code>{}</code>", html_escape(s)))
            .unwrap_or_default(),
        html_escape(&block),
        html_escape(&app.pem)
    );
    (
        [
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-store"),
            ("content-security-policy", "default-src 'none'"),
        ],
        page,
    )
        .into_response()
}

/// Comments in the issue or pull request a run came from, with a token that
/// may only do that, revoked right after.
async fn comment(forge: &GithubForge, origin: &Origin, text: &str) {
    let Origin::Github {
        owner, repo, issue, ..
    } = origin
    else {
        return;
    };
    if let Err(e) = forge.comment(owner, repo, *issue, text).await {
        tracing::warn!(repo = %format!("{owner}/{repo}"), "commenting on #{issue} failed: {e}");
    }
}

/// Refreshes a run's Slack card (and, at the end, says how it went in the thread).
async fn update_card(int: &Integrations, rec: &RunRecord) {
    let (
        Some(slack),
        Some(Origin::Slack {
            channel,
            user,
            message_ts: Some(ts),
            ..
        }),
    ) = (&int.slack, &rec.spec.origin)
    else {
        return;
    };
    let msg = Message::run_card(channel.clone(), &card(int, rec, user));
    if let Err(e) = slack.client.update_message(channel, ts, &msg).await {
        tracing::warn!(run = %rec.id, "updating the run's Slack message failed: {e}");
    }
    if rec.state.is_terminal() {
        let text = outcome_text(int, rec, &format!("<@{user}>"));
        let reply = Message::new(channel.clone(), text).in_thread(ts.clone());
        if let Err(e) = slack.client.post_message(&reply).await {
            tracing::warn!(run = %rec.id, "posting the outcome to Slack failed: {e}");
        }
    }
}

/// The status comment's text for a run as it is now: its state and the live
/// trace while it works, how it went once it is over.
pub fn status_text(int: &Integrations, rec: &RunRecord, author: &str) -> String {
    if rec.state.is_terminal() {
        return outcome_text(int, rec, &format!("@{author}"));
    }
    let doing = match rec.state {
        RunState::Queued => "queued",
        RunState::Preparing => "preparing (cloning, reading the thread)",
        RunState::Running => "working",
        _ => "finishing (committing, pushing)",
    };
    format!(
        "errand run `{}` for @{author} is {doing}. [Live trace]({})",
        rec.id.short(),
        int.run_url(rec.id)
    )
}

/// One paragraph on how a run ended.
pub fn outcome_text(int: &Integrations, rec: &RunRecord, who: &str) -> String {
    let s = &rec.summary;
    let mut parts = Vec::new();
    match rec.state {
        RunState::Succeeded => {
            parts.push(format!("{who} run {} succeeded.", rec.id.short()));
            if let Some(pr) = &s.pr_url {
                parts.push(format!("Pull request: {pr}"));
            } else if let Some(b) = &s.branch {
                parts.push(format!("Branch: {b}"));
            }
            if let Some(d) = s.diffstat.as_deref().filter(|d| !d.is_empty()) {
                parts.push(d.to_string());
            }
        }
        state => parts.push(format!(
            "{who} run {} {}: {}",
            rec.id.short(),
            state,
            rec.reason.as_deref().unwrap_or("no reason recorded")
        )),
    }
    let mut facts = Vec::new();
    if let Some(t) = s.turns {
        facts.push(format!("{t} turns"));
    }
    if let Some(c) = s.cost_usd {
        facts.push(format!("${c:.4}"));
    }
    if let Some(d) = rec.duration() {
        facts.push(errand_slack::blocks::format_duration(
            d.num_seconds().max(0) as u64,
        ));
    }
    if !facts.is_empty() {
        parts.push(facts.join(" · "));
    }
    parts.push(format!("Trace: {}", int.run_url(rec.id)));
    parts.join("\n")
}

/// Tells Slack threads and GitHub issues how their runs are doing. The runner
/// calls it on each state, and the worker pool on runs it ended for a dead
/// process (a run this process never saw: everything needed is in the store).
/// The work happens in order on one task, so a card never goes back to an
/// older state, and each ending is told once even when reported twice.
pub struct Notifier {
    tx: mpsc::UnboundedSender<RunRecord>,
}

/// How many recent endings the [`Notifier`] remembers to tell each once.
const ENDINGS_REMEMBERED: usize = 10_000;

impl Notifier {
    /// Starts the task that tells Slack and GitHub about each run reported to
    /// the returned notifier, in order.
    pub fn start(int: Arc<Integrations>, store: Arc<dyn errand_store::Store>) -> Arc<Notifier> {
        let (tx, mut rx) = mpsc::unbounded_channel::<RunRecord>();
        tokio::spawn(async move {
            // Endings already told: a run and when that turn of it finished
            // (a follow-up ends the same run again, later).
            let mut told = std::collections::HashSet::new();
            let mut order = std::collections::VecDeque::new();
            while let Some(rec) = rx.recv().await {
                if rec.state.is_terminal() {
                    let ending = (rec.id, rec.finished_at);
                    if !told.insert(ending) {
                        continue;
                    }
                    order.push_back(ending);
                    if order.len() > ENDINGS_REMEMBERED {
                        if let Some(old) = order.pop_front() {
                            told.remove(&old);
                        }
                    }
                }
                // The card's message ts is recorded after the run was created:
                // read the run again for it.
                let rec = match store.get_run(rec.id).await {
                    Ok(now) => RunRecord {
                        spec: now.spec,
                        ..rec
                    },
                    Err(_) => rec,
                };
                match &rec.spec.origin {
                    Some(Origin::Slack { .. }) => update_card(&int, &rec).await,
                    Some(Origin::Github {
                        owner,
                        repo,
                        author,
                        status_comment: Some(id),
                        ..
                    }) => {
                        if let Some(gh) = &int.github {
                            let text = status_text(&int, &rec, author);
                            if let Err(e) = gh.forge.edit_status(owner, repo, *id, &text).await {
                                tracing::warn!(run = %rec.id, "editing the status comment failed: {e}");
                            }
                        }
                    }
                    Some(origin @ Origin::Github { author, .. }) if rec.state.is_terminal() => {
                        if let Some(gh) = &int.github {
                            let text = outcome_text(&int, &rec, &format!("@{author}"));
                            comment(&gh.forge, origin, &text).await;
                        }
                    }
                    _ => {}
                }
            }
        });
        Arc::new(Notifier { tx })
    }
}

impl errand_runner::RunObserver for Notifier {
    fn state_changed(&self, run: &RunRecord) {
        let _ = self.tx.send(run.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use errand_slack::fake::{FakeSlack, FakeSlackConfig};
    use errand_store::{SqliteStore, Store};

    use super::*;

    fn outcomes(slack: &FakeSlack) -> Vec<String> {
        slack
            .calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["thread_ts"] == "1700000000.000100")
            .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[tokio::test]
    async fn an_ending_is_told_once_from_the_stored_origin_and_each_turn_again() {
        let slack = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
        let int = Arc::new(Integrations {
            public_url: "http://errand.test".into(),
            slack: Some(SlackIntegration {
                signing_secret: slack.signing_secret().to_string(),
                client: SlackClient::new(&slack.api_base(), slack.bot_token().into()),
            }),
            github: None,
            access: AccessPolicy::new(Vec::new()),
            default_harness: "claude-code".into(),
        });
        let mut spec = RunSpec::new("hang", "synthetic");
        spec.origin = Some(Origin::Slack {
            team: "T1".into(),
            channel: "C1".into(),
            user: "U1".into(),
            message_ts: None,
        });
        let id = RunId::new();
        store.create_run(id, &spec).await.unwrap();
        // The card's message was posted by another process: only the store knows it.
        let origin = Origin::Slack {
            team: "T1".into(),
            channel: "C1".into(),
            user: "U1".into(),
            message_ts: Some("1700000000.000100".into()),
        };
        store.set_origin(id, &origin).await.unwrap();
        store
            .transition(id, RunState::Failed, Some("the worker died"))
            .await
            .unwrap();
        let ended = store.get_run(id).await.unwrap();

        let notifier = Notifier::start(int, store.clone());
        let observer: &dyn errand_runner::RunObserver = notifier.as_ref();
        observer.state_changed(&ended);
        observer.state_changed(&ended);
        // A later turn of the same run ends again: told again.
        let next = RunRecord {
            finished_at: ended.finished_at.map(|t| t + chrono::Duration::seconds(5)),
            reason: Some("the next turn failed".into()),
            ..ended.clone()
        };
        observer.state_changed(&next);
        // One task tells them in order: once the last is told, all were.
        slack
            .wait_for_calls(
                |_| outcomes(&slack).iter().any(|t| t.contains("next turn")),
                Duration::from_secs(30),
            )
            .await;
        let told = outcomes(&slack);
        assert_eq!(told.len(), 2, "{told:#?}");
        assert!(
            told[0].contains("<@U1>") && told[0].contains("failed: the worker died"),
            "{told:#?}"
        );
        let updates = slack.calls_to("chat.update");
        assert_eq!(updates.len(), 2, "{updates:#?}");
        assert_eq!(updates[0].body["ts"], "1700000000.000100");
        assert_eq!(updates[0].body["channel"], "C1");
    }
}
