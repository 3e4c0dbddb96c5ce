//! The fake's issues, pull requests, review comments, collaborator
//! permissions, checks and Actions jobs, each endpoint checking the token's
//! repository and permission as GitHub does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{credential, denied, gh_error};
use super::{git, has, FakeCheck, Shared};

type Perms = BTreeMap<String, String>;

#[derive(Deserialize)]
pub(super) struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
}

impl Page {
    /// GitHub's defaults: 30 a page, at most 100; pages from 1.
    fn slice<T: Clone>(&self, all: &[T]) -> Vec<T> {
        let per = self.per_page.unwrap_or(30).clamp(1, 100);
        let page = self.page.unwrap_or(1).max(1);
        all.iter()
            .skip((page - 1) * per)
            .take(per)
            .cloned()
            .collect()
    }
}

/// Checks the bearer token for `owner/repo` with `allowed`; the error is the response.
#[allow(clippy::result_large_err)] // the error is the answer, sent at once
fn auth(
    s: &Shared,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    allowed: impl Fn(&Perms) -> bool,
) -> Result<(), Response> {
    let Some(token) = credential(headers) else {
        return Err(gh_error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
        ));
    };
    s.authorize(token, &format!("{owner}/{repo}"), allowed)
        .map(|_| ())
        .map_err(denied)
}

fn user(login: &str) -> Value {
    let kind = if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    };
    json!({ "login": login, "type": kind })
}

/// Reading an issue needs `issues: read`; a pull request's issue side, that or `pull_requests: read`.
fn may_read_issue(is_pull: bool) -> impl Fn(&Perms) -> bool {
    move |p| has(p, "issues", "read") || (is_pull && has(p, "pull_requests", "read"))
}

fn is_pull(s: &Shared, owner: &str, repo: &str, number: u64) -> Option<bool> {
    s.lock()
        .issue(&format!("{owner}/{repo}"), number)
        .map(|i| i.is_pull)
}

pub(super) async fn get_issue(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    let pull = is_pull(&s, &owner, &repo, number).unwrap_or(false);
    if let Err(r) = auth(&s, &headers, &owner, &repo, may_read_issue(pull)) {
        return r;
    }
    let st = s.lock();
    let full = format!("{owner}/{repo}");
    let Some(i) = st.issue(&full, number) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let comments = st
        .comments
        .iter()
        .filter(|c| {
            c.issue_number == number
                && format!("{}/{}", c.owner, c.repo).eq_ignore_ascii_case(&full)
        })
        .count();
    let mut v = json!({
        "number": i.number,
        "title": i.title,
        "body": if i.body.is_empty() { Value::Null } else { Value::from(i.body.clone()) },
        "user": user(&i.author),
        "labels": i.labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
        "state": "open",
        "comments": comments,
        "html_url": format!("{}/{full}/issues/{number}", s.base_url),
    });
    if i.is_pull {
        v["pull_request"] =
            json!({ "url": format!("{}/api/v3/repos/{full}/pulls/{number}", s.base_url) });
    }
    Json(v).into_response()
}

pub(super) async fn list_comments(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    let Some(pull) = is_pull(&s, &owner, &repo, number) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = auth(&s, &headers, &owner, &repo, may_read_issue(pull)) {
        return r;
    }
    let st = s.lock();
    let full = format!("{owner}/{repo}");
    let all: Vec<Value> = st
        .comments
        .iter()
        .filter(|c| {
            c.issue_number == number
                && format!("{}/{}", c.owner, c.repo).eq_ignore_ascii_case(&full)
        })
        .map(|c| {
            json!({
                "id": c.id,
                "body": c.body,
                "user": user(&c.author),
                "created_at": c.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "html_url": c.html_url,
            })
        })
        .collect();
    Json(page.slice(&all)).into_response()
}

#[derive(Deserialize)]
pub(super) struct EditReq {
    body: Option<String>,
}

pub(super) async fn edit_comment(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = format!("{owner}/{repo}");
    let on_pull =
        {
            let st = s.lock();
            let Some(c) = st.comments.iter().find(|c| {
                c.id == id && format!("{}/{}", c.owner, c.repo).eq_ignore_ascii_case(&full)
            }) else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            st.issue(&full, c.issue_number).is_some_and(|i| i.is_pull)
        };
    let allowed =
        move |p: &Perms| has(p, "issues", "write") || (on_pull && has(p, "pull_requests", "write"));
    if let Err(r) = auth(&s, &headers, &owner, &repo, allowed) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<EditReq>(&body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(text) = req.body.filter(|b| !b.trim().is_empty()) else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: body is missing",
        );
    };
    let mut st = s.lock();
    let Some(c) = st.comments.iter_mut().find(|c| c.id == id) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if c.author != "errand[bot]" {
        // An App may edit only its own comments.
        return gh_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    c.body = text.clone();
    c.edits += 1;
    Json(json!({ "id": c.id, "html_url": c.html_url, "body": text })).into_response()
}

fn pull_json(s: &Shared, p: &super::RecordedPull, sha: &str, base_sha: &str) -> Value {
    let st = s.lock();
    let full = format!("{}/{}", p.owner, p.repo);
    let issue = st.issue(&full, p.number).cloned();
    let fork = !p.head_repo.eq_ignore_ascii_case(&full);
    json!({
        "number": p.number,
        "title": p.title,
        "body": issue.as_ref().map(|i| i.body.clone()).filter(|b| !b.is_empty()),
        "user": user(&p.author),
        "labels": issue.map(|i| i.labels).unwrap_or_default().iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
        "state": if p.closed { "closed" } else { "open" },
        "html_url": format!("{}/{full}/pull/{}", s.base_url, p.number),
        "head": {
            "ref": p.head,
            "sha": sha,
            "label": format!("{}:{}", p.head_repo.split('/').next().unwrap_or(""), p.head),
            "repo": { "full_name": p.head_repo, "fork": fork },
        },
        "base": { "ref": p.base, "sha": base_sha, "repo": { "full_name": full, "fork": false } },
    })
}

fn find_pull(s: &Shared, owner: &str, repo: &str, number: u64) -> Option<super::RecordedPull> {
    s.lock()
        .pulls
        .iter()
        .find(|p| {
            p.number == number
                && p.owner.eq_ignore_ascii_case(owner)
                && p.repo.eq_ignore_ascii_case(repo)
        })
        .cloned()
}

async fn branch_sha(s: &Shared, owner: &str, repo: &str, branch: &str) -> String {
    match s.repo_dir(owner, repo) {
        Some(dir) => git::branch_sha(&dir, branch).await.unwrap_or_default(),
        None => String::new(),
    }
}

pub(super) async fn get_pull(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| {
        has(p, "pull_requests", "read")
    }) {
        return r;
    }
    let Some(p) = find_pull(&s, &owner, &repo, number) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let full = format!("{owner}/{repo}");
    let sha = if p.head_repo.eq_ignore_ascii_case(&full) {
        branch_sha(&s, &owner, &repo, &p.head).await
    } else {
        "0".repeat(40)
    };
    let base_sha = branch_sha(&s, &owner, &repo, &p.base).await;
    Json(pull_json(&s, &p, &sha, &base_sha)).into_response()
}

pub(super) async fn pull_files(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| {
        has(p, "pull_requests", "read")
    }) {
        return r;
    }
    let Some(p) = find_pull(&s, &owner, &repo, number) else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let files = match s.repo_dir(&owner, &repo) {
        Some(dir) if p.head_repo.eq_ignore_ascii_case(&format!("{owner}/{repo}")) => {
            git::changed_files(&dir, &p.base, &p.head).await
        }
        _ => Vec::new(),
    };
    let all: Vec<Value> = files
        .into_iter()
        .map(|(status, additions, deletions, filename)| {
            json!({ "filename": filename, "status": status, "additions": additions, "deletions": deletions, "changes": additions + deletions })
        })
        .collect();
    Json(page.slice(&all)).into_response()
}

pub(super) async fn review_comments(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| {
        has(p, "pull_requests", "read")
    }) {
        return r;
    }
    let all: Vec<Value> = s
        .lock()
        .review_comments
        .iter()
        .filter(|c| {
            c.pull == number
                && c.owner.eq_ignore_ascii_case(&owner)
                && c.repo.eq_ignore_ascii_case(&repo)
        })
        .map(|c| {
            json!({
                "id": c.id,
                "body": c.body,
                "user": user(&c.author),
                "path": c.path,
                "line": c.line,
                "start_line": c.start_line,
                "side": "RIGHT",
                "diff_hunk": c.diff_hunk,
                "commit_id": c.commit_id,
                "created_at": c.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        })
        .collect();
    Json(page.slice(&all)).into_response()
}

pub(super) async fn permission(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, login)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "metadata", "read")) {
        return r;
    }
    let level = s
        .lock()
        .collaborators
        .get(&(
            format!("{owner}/{repo}").to_ascii_lowercase(),
            login.to_ascii_lowercase(),
        ))
        .cloned()
        .unwrap_or_else(|| "none".into());
    Json(json!({ "permission": level, "user": user(&login) })).into_response()
}

fn find_check(
    s: &Shared,
    owner: &str,
    repo: &str,
    pick: impl Fn(&FakeCheck) -> bool,
) -> Vec<FakeCheck> {
    s.lock()
        .checks
        .iter()
        .filter(|c| {
            c.owner.eq_ignore_ascii_case(owner) && c.repo.eq_ignore_ascii_case(repo) && pick(c)
        })
        .cloned()
        .collect()
}

fn check_json(c: &FakeCheck) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "head_sha": c.head_sha,
        "status": "completed",
        "conclusion": c.conclusion,
        "output": { "title": format!("{} {}", c.name, c.conclusion), "summary": null, "text": null },
        "app": { "slug": "github-actions" },
        "check_suite": { "id": c.suite_id },
    })
}

fn job_json(c: &FakeCheck) -> Value {
    json!({
        "id": c.id,
        "run_id": c.workflow_run_id,
        "name": c.name,
        "head_sha": c.head_sha,
        "head_branch": c.head_branch,
        "status": "completed",
        "conclusion": c.conclusion,
        "steps": c.steps.iter().enumerate().map(|(i, (name, conclusion))| json!({
            "name": name, "number": i + 1, "status": "completed", "conclusion": conclusion
        })).collect::<Vec<_>>(),
    })
}

pub(super) async fn check_run(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "checks", "read")) {
        return r;
    }
    match find_check(&s, &owner, &repo, |c| c.id == id).first() {
        Some(c) => Json(check_json(c)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(super) async fn suite_runs(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "checks", "read")) {
        return r;
    }
    let runs: Vec<Value> = find_check(&s, &owner, &repo, |c| c.suite_id == id)
        .iter()
        .map(check_json)
        .collect();
    Json(json!({ "total_count": runs.len(), "check_runs": runs })).into_response()
}

pub(super) async fn workflow_jobs(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "actions", "read")) {
        return r;
    }
    let jobs: Vec<Value> = find_check(&s, &owner, &repo, |c| c.workflow_run_id == id)
        .iter()
        .map(job_json)
        .collect();
    Json(json!({ "total_count": jobs.len(), "jobs": jobs })).into_response()
}

pub(super) async fn job(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "actions", "read")) {
        return r;
    }
    match find_check(&s, &owner, &repo, |c| c.id == id).first() {
        Some(c) => Json(job_json(c)).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// As GitHub: a redirect to a short-lived address that needs no credential.
pub(super) async fn job_logs(
    State(s): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = auth(&s, &headers, &owner, &repo, |p| has(p, "actions", "read")) {
        return r;
    }
    let Some(c) = find_check(&s, &owner, &repo, |c| c.id == id)
        .into_iter()
        .next()
    else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let code = super::api::random_code();
    s.lock().log_links.insert(code.clone(), c.log);
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("{}/api/v3/_fake/logs/{code}", s.base_url),
        )],
    )
        .into_response()
}

pub(super) async fn log_download(
    State(s): State<Arc<Shared>>,
    Path(code): Path<String>,
) -> Response {
    match s.lock().log_links.remove(&code) {
        Some(log) => ([(header::CONTENT_TYPE, "text/plain")], log).into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
