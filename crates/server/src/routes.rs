//! The API's routes and its OpenAPI document, from one table.
//!
//! Every route of the API is a row of [`API`] (it needs a token, and the
//! scope the row names) or [`PUBLIC`] (no token): a handler carrying its
//! `#[utoipa::path]`, collected with `utoipa_axum::routes!`. The router and the
//! document are built from the same rows ([`openapi`], [`mount`]), so a route
//! cannot be served undocumented, nor documented and not served, and the scope
//! a route checks is the one its documentation names.
//!
//! The API lives under [`V1`]; the same routes answer under `/api` (the paths
//! of errand 0.1) for one more release, marked deprecated with a `Deprecation`
//! header and a `Link` to their `/api/v1` successor.

use axum::extract::{OriginalUri, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use errand_store::Scope::{self, Admin, Read, Run};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::{api, auth, metrics, newrun, pick, sse, viewer, AppState};

/// Where the current version of the API lives.
pub const V1: &str = "/api/v1";

/// The previous paths of the API, answered as aliases of [`V1`] for one more release.
pub const DEPRECATED: &str = "/api";

/// One route that needs a token: the scope it needs, and its handler with its documentation.
pub struct ApiRoute {
    /// The scope a token must hold.
    pub scope: Scope,
    /// The handler (`routes!(handler)`); its path is relative to [`V1`].
    pub route: fn() -> UtoipaMethodRouter<AppState>,
}

/// Every route that needs a token, under [`V1`].
pub const API: &[ApiRoute] = &[
    ApiRoute {
        scope: Run,
        route: || routes!(api::create_run),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(api::list_runs),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(newrun::me),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(newrun::options),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(api::get_run),
    },
    ApiRoute {
        scope: Run,
        route: || routes!(api::cancel_run),
    },
    ApiRoute {
        scope: Run,
        route: || routes!(api::follow_up),
    },
    ApiRoute {
        scope: Run,
        route: || routes!(pick::pick),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(api::events),
    },
    ApiRoute {
        scope: Read,
        route: || routes!(sse::stream),
    },
    ApiRoute {
        scope: Run,
        route: || routes!(auth::create_share),
    },
    ApiRoute {
        scope: Run,
        route: || routes!(auth::revoke_share),
    },
    ApiRoute {
        scope: Read,
        route: || {
            let (schemas, paths, method) = routes!(viewer::parse_upload);
            let limit = axum::extract::DefaultBodyLimit::max(viewer::MAX_UPLOAD);
            (schemas, paths, method.layer(limit))
        },
    },
    ApiRoute {
        scope: Admin,
        route: || routes!(auth::list_tokens),
    },
    ApiRoute {
        scope: Admin,
        route: || routes!(auth::create_token),
    },
    ApiRoute {
        scope: Admin,
        route: || routes!(auth::revoke_token),
    },
];

/// Every documented route that needs no token, at the server's root (share
/// links carry their own secret).
pub const PUBLIC: &[fn() -> UtoipaMethodRouter<AppState>] = &[
    || routes!(healthz),
    || routes!(api::ready),
    || routes!(metrics::render),
    || routes!(auth::shared_run),
    || routes!(auth::shared_events),
    || routes!(auth::shared_stream),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "errand",
        description = "Run coding agents in the background. Every error is JSON {\"error\":{\"code\",\"message\"}} with a stable code (see the Error schema). Each route under /api/v1 needs one token scope, named in its security requirement and in x-errand-scope: read (runs, events, streams), run (start, cancel, follow up, share), admin (tokens). The paths under /api without v1 are deprecated aliases of the same routes, answered for one more release with a Deprecation header."
    ),
    components(schemas(crate::views::ErrorBody)),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "Created with `errand token create NAME [--scope read,run,admin]` (default read,run) or POST /api/v1/tokens. A token without the scope a route needs gets 403 insufficient_scope."
                .into(),
        );
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", summary = "Liveness", responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", summary = "This document (OpenAPI 3.1)", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| openapi().to_pretty_json().unwrap_or_default());
    ([("content-type", "application/json")], DOC.as_str()).into_response()
}

/// The operations of a path, whatever their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("Error"))),
        )
        .build()
}

/// `route`, answered only for tokens holding `scope`, and documented so.
fn scoped(scope: Scope, route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (schemas, mut paths, method) = route;
    for op in paths.paths.values_mut().flat_map(operations) {
        op.security = Some(vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
        let ext = ExtensionsBuilder::new()
            .add("x-errand-scope", scope.as_str())
            .build();
        match &mut op.extensions {
            Some(e) => e.merge(ext),
            None => op.extensions = Some(ext),
        }
        let needs = format!("Needs a token with the `{scope}` scope.");
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
            _ => needs,
        });
        let responses = &mut op.responses.responses;
        for (status, what) in [
            (
                "401",
                "unauthorized: no token, or an unknown or revoked one",
            ),
            ("403", "insufficient_scope: the token lacks the scope"),
        ] {
            responses
                .entry(status.into())
                .or_insert_with(|| error_response(what).into());
        }
    }
    (schemas, paths, auth::scoped(scope, method))
}

/// `route`, documented as needing no token.
fn public(route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (schemas, mut paths, method) = route;
    for op in paths.paths.values_mut().flat_map(operations) {
        op.security = Some(Vec::new());
    }
    (schemas, paths, method)
}

/// The routes under [`V1`] (paths relative to it); `guard` puts the token
/// check on those of [`API`], which come first.
fn v1(
    guard: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let api = API.iter().fold(OpenApiRouter::new(), |r, row| {
        r.routes(scoped(row.scope, (row.route)()))
    });
    guard(api).routes(public(routes!(openapi_json)))
}

/// The documented routes at the server's root.
fn root() -> OpenApiRouter<AppState> {
    PUBLIC
        .iter()
        .fold(OpenApiRouter::new(), |r, route| r.routes(public(route())))
}

/// The OpenAPI document of every route of [`API`] and [`PUBLIC`], generated
/// from the handlers' annotations and types.
pub fn openapi() -> Document {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(V1, v1(|r| r))
        .merge(root())
        .into_openapi()
}

/// The API's routes: [`V1`], its deprecated aliases under [`DEPRECATED`], and [`PUBLIC`].
pub fn mount(state: &AppState) -> Router<AppState> {
    let token = axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
    let v1: Router<AppState> = v1(|r| r.route_layer(token)).into();
    let aliases = Router::new()
        .nest(DEPRECATED, v1.clone())
        .layer(axum::middleware::from_fn(deprecated));
    Router::new()
        .nest(V1, v1)
        .merge(aliases)
        .merge(Router::from(root()))
}

/// Marks an answer of a deprecated alias: `Deprecation: true` and a `Link`
/// to the same path under [`V1`].
async fn deprecated(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("deprecation", HeaderValue::from_static("true"));
    if let Some(rest) = path.strip_prefix(DEPRECATED) {
        if let Ok(v) = HeaderValue::from_str(&format!("<{V1}{rest}>; rel=\"successor-version\"")) {
            h.insert("link", v);
        }
    }
    resp
}

/// Every route of the API as `(METHOD, path, scope)`, the path in full
/// (`/api/v1/…` for [`API`]), `None` for the public ones: read from the
/// same rows the router is built from.
pub fn table() -> Vec<(String, String, Option<Scope>)> {
    type Row = (String, String, Option<Scope>);
    fn rows(route: UtoipaMethodRouter<AppState>, prefix: &str, scope: Option<Scope>) -> Vec<Row> {
        let mut out = Vec::new();
        for (path, item) in route.1.paths {
            for (m, present) in [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ] {
                if present {
                    out.push((m.to_string(), format!("{prefix}{path}"), scope));
                }
            }
        }
        out
    }
    let mut out = Vec::new();
    for row in API {
        out.extend(rows((row.route)(), V1, Some(row.scope)));
    }
    out.extend(rows(routes!(openapi_json), V1, None));
    for route in PUBLIC {
        out.extend(rows(route(), "", None));
    }
    out
}
