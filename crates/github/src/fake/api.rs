//! The fake's REST endpoints and request log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{git, has, rank, threads, Denied, IssuedToken, RecordedPull, Shared, TokenStyle};

const API: &str = "/api/v3";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/installation"),
            get(installation),
        )
        .route(
            &format!("{API}/app/installations/{{id}}/access_tokens"),
            post(access_tokens),
        )
        .route(&format!("{API}/installation/token"), delete(revoke))
        .route(&format!("{API}/app/installations"), get(list_installations))
        .route(
            &format!("{API}/installation/repositories"),
            get(installation_repositories),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/git/refs/heads/{{*branch}}"),
            delete(delete_branch),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/pulls"),
            post(create_pull),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/issues/{{number}}/comments"),
            post(create_comment).get(threads::list_comments),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/issues/{{number}}"),
            get(threads::get_issue),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/issues/comments/{{id}}"),
            axum::routing::patch(threads::edit_comment),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/pulls/{{number}}"),
            get(threads::get_pull).patch(update_pull),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/pulls/{{number}}/files"),
            get(threads::pull_files),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/pulls/{{number}}/comments"),
            get(threads::review_comments),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/collaborators/{{login}}/permission"),
            get(threads::permission),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/check-runs/{{id}}"),
            get(threads::check_run),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/check-suites/{{id}}/check-runs"),
            get(threads::suite_runs),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/actions/runs/{{id}}/jobs"),
            get(threads::workflow_jobs),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/actions/jobs/{{id}}"),
            get(threads::job),
        )
        .route(
            &format!("{API}/repos/{{owner}}/{{repo}}/actions/jobs/{{id}}/logs"),
            get(threads::job_logs),
        )
        .route(
            &format!("{API}/_fake/logs/{{code}}"),
            get(threads::log_download),
        )
        .route(
            &format!("{API}/app-manifests/{{code}}/conversions"),
            post(convert_manifest),
        )
        .route("/{owner}/{repo_git}/{*rest}", any(git::serve))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), log_request))
        .with_state(shared)
}

async fn log_request(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    s.lock().requests.push(format!("{} {target}", req.method()));
    next.run(req).await
}

/// A GitHub-style JSON error.
pub(super) fn gh_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })),
    )
        .into_response()
}

fn validation_failed(message: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "PullRequest", "code": "custom", "message": message }],
            "documentation_url": "https://docs.github.com/rest"
        })),
    )
        .into_response()
}

async fn not_found() -> Response {
    gh_error(StatusCode::NOT_FOUND, "Not Found")
}

pub(super) fn denied(d: Denied) -> Response {
    match d {
        Denied::Unauthorized => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        Denied::NotCovered => gh_error(StatusCode::NOT_FOUND, "Not Found"),
        Denied::Forbidden => gh_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ),
    }
}

/// The credential after `Bearer ` or `token ` in `Authorization`.
pub(super) fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| rest.trim())
}

#[derive(Deserialize)]
struct JwtClaims {
    iat: i64,
    exp: i64,
    iss: Value,
}

/// Verifies the App JWT as GitHub does: RS256 with the App's key, `iss`, unexpired,
/// lifetime at most 10 minutes (plus a minute of backdating), `iat` not in the future.
/// The error is the 401 message.
fn check_jwt(s: &Shared, headers: &HeaderMap) -> Result<(), &'static str> {
    let jwt = credential(headers).ok_or("A JSON web token could not be decoded")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<JwtClaims>(jwt, &s.key, &v)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => {
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
            }
            _ => "A JSON web token could not be decoded",
        })?
        .claims;
    let iss = match &claims.iss {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if iss != s.app_id {
        return Err("'Issuer' claim ('iss') must be the GitHub App's id");
    }
    if claims.exp - claims.iat > 660 {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if claims.iat > Utc::now().timestamp() + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past");
    }
    Ok(())
}

fn find_installation(s: &Shared, full_name: &str) -> Option<u64> {
    let st = s.lock();
    st.installations
        .iter()
        .find(|(_, repos)| repos.iter().any(|r| r.eq_ignore_ascii_case(full_name)))
        .map(|(id, _)| *id)
}

async fn installation(
    State(s): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(message) = check_jwt(&s, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, message);
    }
    match find_installation(&s, &format!("{owner}/{repo}")) {
        Some(id) => Json(json!({
            "id": id,
            "account": { "login": owner },
            "app_id": s.app_id,
            "repository_selection": "selected",
            "permissions": s.granted,
            "events": crate::manifest::EVENTS,
        }))
        .into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Deserialize, Default)]
struct TokenReq {
    repositories: Option<Vec<String>>,
    permissions: Option<BTreeMap<String, String>>,
}

/// A random code for a one-time download address.
pub(super) fn random_code() -> String {
    random_chars(32)
}

fn random_chars(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn new_token(style: TokenStyle, app_id: &str) -> String {
    match style {
        TokenStyle::Classic => format!("ghs_{}", random_chars(36)),
        TokenStyle::Stateless => {
            format!(
                "ghs_{app_id}_{}.{}.{}",
                random_chars(36),
                random_chars(300),
                random_chars(170)
            )
        }
    }
}

async fn access_tokens(
    State(s): State<Arc<Shared>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(message) = check_jwt(&s, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, message);
    }
    let req: TokenReq = if body.iter().all(u8::is_ascii_whitespace) {
        TokenReq::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };
    let style = match headers
        .get("x-github-stateless-s2s-token")
        .and_then(|v| v.to_str().ok())
    {
        Some("enabled") => TokenStyle::Stateless,
        Some("disabled") => TokenStyle::Classic,
        _ => s.token_style,
    };
    let mut st = s.lock();
    let Some(installed) = st.installations.get(&id).cloned() else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let repositories: Vec<String> = match req.repositories {
        None => installed,
        Some(names) => {
            let mut out: Vec<String> = Vec::new();
            for name in &names {
                let matches: Vec<&String> = installed
                    .iter()
                    .filter(|full| {
                        full.rsplit('/')
                            .next()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .collect();
                if matches.is_empty() {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                    );
                }
                out.extend(
                    matches
                        .into_iter()
                        .filter(|m| !out.contains(m))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
            out
        }
    };
    let permissions = match req.permissions {
        None => s.granted.clone(),
        Some(wanted) => {
            for (name, level) in &wanted {
                if rank(level).is_none() {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("Invalid permission level {level:?} for {name}"),
                    );
                }
                if !has(&s.granted, name, level) {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The permissions requested are not granted to this installation.",
                    );
                }
            }
            wanted
        }
    };
    let expires_at = Utc::now() + s.token_lifetime;
    let token = new_token(style, &s.app_id);
    st.tokens.push(IssuedToken {
        token: token.clone(),
        installation: id,
        repositories: repositories.clone(),
        permissions: permissions.clone(),
        expires_at,
        revoked: false,
        uses: 0,
    });
    let repos: Vec<Value> = repositories
        .iter()
        .enumerate()
        .map(|(i, full)| {
            let name = full.rsplit('/').next().unwrap_or(full);
            json!({ "id": i + 1, "name": name, "full_name": full })
        })
        .collect();
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": permissions,
            "repository_selection": "selected",
            "repositories": repos,
        })),
    )
        .into_response()
}

async fn revoke(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let now = Utc::now();
    let mut st = s.lock();
    match st
        .tokens
        .iter_mut()
        .find(|t| t.token == token && !t.revoked && t.expires_at > now)
    {
        Some(t) => {
            t.revoked = true;
            t.uses += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        None => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

#[derive(Deserialize)]
struct PullReq {
    title: Option<String>,
    head: Option<String>,
    base: Option<String>,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
}

/// `GET /app/installations` (App JWT): the App's installations.
async fn list_installations(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(message) = check_jwt(&s, &headers) {
        return gh_error(StatusCode::UNAUTHORIZED, message);
    }
    let st = s.lock();
    let list: Vec<Value> = st
        .installations
        .iter()
        .map(|(id, repos)| {
            let login = repos
                .first()
                .and_then(|r| r.split('/').next())
                .unwrap_or("");
            json!({ "id": id, "account": { "login": login } })
        })
        .collect();
    Json(Value::Array(list)).into_response()
}

#[derive(Deserialize)]
struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
}

/// `GET /installation/repositories` (an installation token): the
/// repositories the token covers, a page at a time.
async fn installation_repositories(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<Page>,
) -> Response {
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let now = Utc::now();
    let mut st = s.lock();
    let Some(t) = st
        .tokens
        .iter_mut()
        .find(|t| t.token == token && !t.revoked && t.expires_at > now)
    else {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    t.uses += 1;
    let per_page = q.per_page.unwrap_or(30).clamp(1, 100);
    let page = q.page.unwrap_or(1).max(1);
    let all = t.repositories.clone();
    let repos: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|full| {
            let name = full.rsplit('/').next().unwrap_or(full);
            json!({ "full_name": full, "name": name })
        })
        .collect();
    Json(json!({ "total_count": all.len(), "repositories": repos })).into_response()
}

/// `DELETE /repos/{owner}/{repo}/git/refs/heads/{branch}`: needs `contents: write`.
async fn delete_branch(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let full = format!("{owner}/{repo}");
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    if let Err(d) = s.authorize(token, &full, |p| has(p, "contents", "write")) {
        return denied(d);
    }
    let Some(dir) = s.repo_dir(&owner, &repo).filter(|d| d.is_dir()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if git::delete_branch(&dir, &branch).await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        validation_failed("Reference does not exist")
    }
}

/// `PATCH /repos/{owner}/{repo}/pulls/{number}`: only `state` is kept
/// (`closed` or `open`); needs `pull_requests: write`.
async fn update_pull(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = format!("{owner}/{repo}");
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    if let Err(d) = s.authorize(token, &full, |p| has(p, "pull_requests", "write")) {
        return denied(d);
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let closed = match req.get("state").and_then(Value::as_str) {
        Some("closed") => true,
        Some("open") => false,
        None => return validation_failed("nothing to update"),
        Some(other) => return validation_failed(&format!("state {other:?} is not open or closed")),
    };
    let mut st = s.lock();
    let Some(p) = st
        .pulls
        .iter_mut()
        .find(|p| p.owner == owner && p.repo == repo && p.number == number)
    else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    p.closed = closed;
    Json(json!({
        "number": number,
        "state": if closed { "closed" } else { "open" },
        "html_url": format!("{}/{full}/pull/{number}", s.base_url),
    }))
    .into_response()
}

async fn create_pull(
    State(s): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = format!("{owner}/{repo}");
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    if let Err(d) = s.authorize(token, &full, |p| has(p, "pull_requests", "write")) {
        return denied(d);
    }
    let Some(dir) = s.repo_dir(&owner, &repo).filter(|d| d.is_dir()) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Ok(req) = serde_json::from_slice::<PullReq>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let (Some(title), Some(head), Some(base)) = (req.title, req.head, req.base) else {
        return validation_failed("title, head and base are required");
    };
    // `owner:branch` names a branch in the same repository here (no forks in the fake).
    let head = match head.split_once(':') {
        Some((o, b)) if o.eq_ignore_ascii_case(&owner) => b.to_string(),
        _ => head,
    };
    for branch in [&head, &base] {
        if !git::branch_exists(&dir, branch).await {
            return validation_failed(&format!(
                "Field 'head' or 'base' is invalid: no branch {branch:?}"
            ));
        }
    }
    if head == base {
        return validation_failed(&format!("No commits between {base} and {head}"));
    }
    let mut st = s.lock();
    if st
        .pulls
        .iter()
        .any(|p| p.owner == owner && p.repo == repo && p.head == head && p.base == base)
    {
        return validation_failed(&format!(
            "A pull request already exists for {owner}:{head}."
        ));
    }
    let body = req.body.unwrap_or_default();
    let number = st.add_issue(&full, true, &title, &body, "errand[bot]", &[]);
    let html_url = format!("{}/{full}/pull/{number}", s.base_url);
    st.pulls.push(RecordedPull {
        owner,
        repo,
        number,
        title,
        head: head.clone(),
        base: base.clone(),
        body,
        draft: req.draft,
        head_repo: full.clone(),
        author: "errand[bot]".into(),
        closed: false,
    });
    (
        StatusCode::CREATED,
        Json(json!({
            "number": number,
            "html_url": html_url,
            "state": "open",
            "draft": req.draft,
            "head": { "ref": head },
            "base": { "ref": base },
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CommentReq {
    body: Option<String>,
}

async fn create_comment(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = format!("{owner}/{repo}");
    let Some(token) = credential(&headers) else {
        return gh_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let allowed = |p: &BTreeMap<String, String>| {
        has(p, "issues", "write") || has(p, "pull_requests", "write")
    };
    if let Err(d) = s.authorize(token, &full, allowed) {
        return denied(d);
    }
    let Ok(req) = serde_json::from_slice::<CommentReq>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(text) = req.body.filter(|b| !b.trim().is_empty()) else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: body is missing",
        );
    };
    let mut st = s.lock();
    if !st.issue_exists(&full, number) {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let c = st.push_comment(&owner, &repo, number, "errand[bot]", &text, &s.base_url);
    (
        StatusCode::CREATED,
        Json(json!({ "id": c.id, "html_url": c.html_url, "body": text })),
    )
        .into_response()
}

/// `POST /app-manifests/{code}/conversions`: the configured code, once.
async fn convert_manifest(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(code): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut slot = s.manifest.lock().unwrap_or_else(|p| p.into_inner());
    match slot.take() {
        Some((c, pem, secret)) if c == code => axum::Json(serde_json::json!({
            "id": s.app_id.parse::<u64>().unwrap_or(0),
            "slug": "errand",
            "html_url": format!("{}/apps/errand", s.base_url),
            "client_id": "Iv1.fake",
            "pem": pem,
            "webhook_secret": secret,
        }))
        .into_response(),
        other => {
            *slot = other;
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"message": "Not Found"})),
            )
                .into_response()
        }
    }
}
