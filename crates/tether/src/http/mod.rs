//! The HTTP edge: the router, request metrics, operational endpoints and the
//! embedded web assets (SDK, dashboard, demo). Handlers live in the
//! submodules; every error leaves through [`problem::ApiError`].

pub mod access;
pub mod admin;
pub mod batch;
pub mod cluster;
pub mod events;
pub mod history;
pub mod problem;
pub mod rate;
pub mod server;
pub mod sessions;

use crate::app::{App, CommitError};
use crate::wire::admin::{DemoToken, DemoTokenRequest};
use crate::wire::problem::{BadRequest, MethodNotAllowed, Problem, TooLarge};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router};
use problem::{ApiError, JsonBody};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tether_engine::Status;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

impl From<CommitError> for ApiError {
    /// The change could not be made durable: nothing was acknowledged.
    fn from(e: CommitError) -> ApiError {
        ApiError::unavailable(e.0)
    }
}

/// Every route with its description: each `routes!` registers handlers by
/// their `#[utoipa::path]`, so the router and `/openapi.json` come from the
/// same calls and no route exists undocumented. Only the static-file fallback
/// (the embedded `web/` tree beyond the documented pages) is outside it.
pub fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(batch::create_many))
        .routes(routes!(sessions::get))
        .routes(routes!(history::history))
        .routes(routes!(sessions::heartbeat))
        .routes(routes!(sessions::end))
        .routes(routes!(sessions::complete))
        .routes(routes!(sessions::beacon))
        .routes(routes!(sessions::revive))
        .routes(routes!(sessions::join))
        .routes(routes!(sessions::participant_heartbeat))
        .routes(routes!(sessions::leave))
        .routes(routes!(sessions::create_invite))
        .routes(routes!(sessions::join_invite))
        .routes(routes!(events::sse))
        .routes(routes!(events::ws))
        .routes(routes!(admin::kinds))
        .routes(routes!(admin::health))
        .routes(routes!(cluster::cluster))
        .routes(routes!(cluster::presence))
        .routes(routes!(admin::cleanup_preview, admin::cleanup_execute))
        .routes(routes!(demo_token))
        .routes(routes!(crate::webhooks::http::endpoints))
        .routes(routes!(crate::webhooks::http::deliveries))
        .routes(routes!(crate::webhooks::http::retry))
        .merge(crate::matching::http::routes())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(root))
        .routes(routes!(admin_page))
        .routes(routes!(demo_page))
        .routes(routes!(sdk_js))
}

pub fn router(app: Arc<App>) -> Router {
    let (router, _) = api().split_for_parts();
    let cors = cors_layer(&app.cors);
    router.fallback(static_asset).layer(EdgeLayer(app.clone())).layer(cors).with_state(app)
}

/// The layer every route (and the fallback) runs inside: request metrics and
/// cluster routing ([`observe`]).
///
/// Hand-written rather than two `middleware::from_fn` layers: axum wraps each
/// route in every layer and clones the whole stack under a layer on each call,
/// and `from_fn` boxes the rest of the stack again as `Next`, so each layer
/// cost a deep clone and several allocations per request. Here the clone is
/// of the route alone (measured in the heartbeat profile, docs/PERFORMANCE.md).
#[derive(Clone)]
struct EdgeLayer(Arc<App>);

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { app: self.0.clone(), inner }
    }
}

#[derive(Clone)]
struct Edge<S> {
    app: Arc<App>,
    inner: S,
}

impl<S> tower::Service<Request> for Edge<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The ready service handles this request; its clone waits for the next.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let app = self.app.clone();
        Box::pin(async move { Ok(observe(app, req, inner).await) })
    }
}

/// CORS (`cors_origins`, extension), outermost so a preflight is answered
/// before routing, auth or rate limits. Bearer tokens are the only
/// credentials (no cookies), so credentials are never allowed; the headers
/// a client sends and reads are listed explicitly (browsers never match
/// `Authorization` by `*`).
fn cors_layer(cors: &crate::config::Cors) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let names = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    // `Vary` names the request headers an answer depends on. With `*` no CORS
    // header depends on the request (the methods and headers allowed are
    // fixed lists), so none is sent (the Fetch standard asks for `Vary` only
    // beyond `*` or one static origin); tower-http would otherwise build the
    // same `Vary` value afresh for every response (~2k instructions per
    // heartbeat in the profile). With a list of origins the answer depends on
    // `Origin` and tower-http's `Vary` stays.
    let layer = match cors {
        crate::config::Cors::Any => CorsLayer::new().vary(Vec::<HeaderName>::new()).allow_origin(AllowOrigin::any()),
        crate::config::Cors::Origins(list) => CorsLayer::new().allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect::<Vec<_>>(),
        )),
    };
    layer
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(names(&["authorization", "content-type", "last-event-id", "prefer"]))
        .expose_headers(names(&[
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "tether-expires-at",
            "preference-applied",
            "www-authenticate",
        ]))
        .max_age(std::time::Duration::from_secs(3600))
}

/// Records latency and status per route around the cluster's routing step
/// and the route itself; turns axum's bare 405 into problem+json.
async fn observe<S>(app: Arc<App>, req: Request, mut route_service: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let start = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let response = crate::cluster::route(&app, req, |req| async move {
        match route_service.call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    })
    .await;
    app.metrics.request_latency.observe(start.elapsed().as_secs_f64());
    let status = response.status();
    let route = matched.as_ref().map_or("other", MatchedPath::as_str);
    app.metrics.count_request(method.as_str(), route, status.as_u16());
    if status == StatusCode::METHOD_NOT_ALLOWED && response.headers().get(header::CONTENT_TYPE).is_none() {
        return ApiError::new(status, "Method not allowed", format!("{method} is not allowed on {route}"))
            .into_response();
    }
    response
}

/// Liveness probe
///
/// `200 ok` while the process serves.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving.", body = String, content_type = "text/plain", example = "ok"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness probe
///
/// `200 ready` once the store is open and recovered.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain", example = "ready"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, description = "Still recovering.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(std::sync::atomic::Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::unavailable("recovering").into_response()
    }
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format (`text/plain; version=0.0.4`).", body = String, content_type = "text/plain"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    // O(kinds), not O(sessions): the engine keeps the counts as sessions change,
    // so a scrape never stalls the deadline timer behind a walk of every session.
    let (live, pool) = app.read(|core| {
        let live: Vec<(String, Status, u64)> =
            core.engine.live_counts().map(|(kind, status, n)| (kind.to_string(), status, n as u64)).collect();
        (live, core.matching.pool_size())
    });
    match app.metrics.render(live, pool) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::internal("the metrics could not be encoded").into_response(),
    }
}

/// This OpenAPI 3.1 description
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi_json", tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI document.", body = Object, content_type = "application/json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

/// Redirect to the dashboard
#[utoipa::path(get, path = "/", operation_id = "root", tag = "operations",
    responses(
        (status = 307, description = "Temporary redirect to `/admin`.", headers(("location" = String, description = "/admin"))),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn root() -> Redirect {
    Redirect::temporary("/admin")
}

/// The admin dashboard page
///
/// Served from the embedded `web/admin`; it asks for an API key and calls `/v1/admin/*`.
#[utoipa::path(get, path = "/admin", operation_id = "admin_page", tag = "operations",
    responses(
        (status = 200, description = "The dashboard.", body = String, content_type = "text/html"),
        (status = 404, description = "The embedded file server's answer for a file it does not hold (e.g. a mistyped sub-path).", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn admin_page(state: State<Arc<App>>, req: Request) -> Response {
    static_asset(state, req).await
}

/// The demo pages
///
/// Served from the embedded `web/demo` (also `/demo/interview.html`), only in demo mode.
#[utoipa::path(get, path = "/demo", operation_id = "demo_page", tag = "demo",
    responses(
        (status = 200, description = "The demo page.", body = String, content_type = "text/html"),
        (status = 404, description = "Demo mode is off.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn demo_page(state: State<Arc<App>>, req: Request) -> Response {
    static_asset(state, req).await
}

/// The browser SDK
///
/// Served from the embedded `web/sdk`; its TypeScript declarations are beside it at `/sdk/tether.d.ts`.
#[utoipa::path(get, path = "/sdk/tether.js", operation_id = "sdk_js", tag = "operations",
    responses(
        (status = 200, description = "The ES module.", body = String, content_type = "text/javascript"),
        (status = 404, description = "The embedded file server's answer for a file it does not hold (e.g. a mistyped sub-path).", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
async fn sdk_js(state: State<Arc<App>>, req: Request) -> Response {
    static_asset(state, req).await
}

/// Mint a demo user token
///
/// Only with `[auth].demo` on (`tether serve --demo`, loopback only); no authentication.
#[utoipa::path(post, path = "/v1/demo/token", operation_id = "demo_token", tag = "demo",
    request_body = DemoTokenRequest,
    responses(
        (status = 200, description = "A user token valid 12 hours.", body = DemoToken),
        (status = 400, response = BadRequest),
        (status = 404, description = "Demo mode is off.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 413, response = TooLarge),
        (status = 422, description = "`user_id` missing or not 1–64 of letters, digits, `-`, `_`, `.`; `field` names it.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn demo_token(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<DemoTokenRequest>,
) -> Result<Json<DemoToken>, ApiError> {
    if !app.demo {
        return Err(ApiError::not_found("resource"));
    }
    let id = body.user_id.trim();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(ApiError::invalid(
            "user_id",
            "user_id must be 1..=64 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(Json(DemoToken { token: app.auth.mint(id, None, 12 * 3600), user_id: id.to_string() }))
}

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web"]
struct WebAssets;

/// Serves the embedded `web/` directory: `/admin`, `/demo` (demo mode only), `/sdk/tether.js`, …
async fn static_asset(State(app): State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/').trim_end_matches('/');
    if path.starts_with("v1/") || path == "v1" {
        return ApiError::not_found("endpoint").into_response();
    }
    if path.starts_with("demo") && !app.demo {
        return ApiError::new(StatusCode::NOT_FOUND, "Not found", "the demo is off; start with `tether serve --demo`")
            .into_response();
    }
    let candidates = [path.to_string(), format!("{path}/index.html"), format!("{path}.html")];
    for name in candidates.iter().filter(|n| !n.is_empty()) {
        if let Some(file) = WebAssets::get(name) {
            // Files are read-only: TRACE, POST, … on one is 405, as on the routed pages.
            if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
                let method = req.method().clone();
                return ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    format!("{method} is not allowed on /{name}: web assets answer GET and HEAD"),
                )
                .with_header(header::ALLOW, axum::http::HeaderValue::from_static("GET, HEAD"))
                .into_response();
            }
            // mime_guess reads `.ts` as MPEG transport stream; ours are TypeScript declarations.
            let mime = if name.ends_with(".ts") {
                "text/plain; charset=utf-8".to_string()
            } else {
                mime_guess::from_path(name).first_or_octet_stream().as_ref().to_string()
            };
            return (
                [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache".to_string())],
                file.data.into_owned(),
            )
                .into_response();
        }
    }
    ApiError::not_found("resource").into_response()
}

/// Serves until `shutdown` resolves, then closes event streams and sockets,
/// lets in-flight requests finish and flushes the journal. `limits` are the
/// connection limits of `[limits]` ([`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    limits: &crate::config::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timer = tokio::spawn(app.clone().run_timer());
    let flusher = tokio::spawn(app.clone().run_flusher());
    let purger = tokio::spawn(app.clone().run_purger());
    let webhooks = tokio::spawn(crate::webhooks::run(app.clone()));
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    let on_shutdown = app.clone();
    let router = router(app.clone());
    let result = server::run(listener, router, limits, async move {
        shutdown.await;
        tracing::info!("shutting down: closing event streams, finishing requests");
        let _ = on_shutdown.closing.send(true);
    })
    .await;
    let _ = app.closing.send(true);
    let _ = tokio::join!(timer, flusher, purger, webhooks);
    app.flush_heartbeats();
    if let Err(e) = app.journal.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    result
}
