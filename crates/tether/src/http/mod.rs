//! The HTTP edge: the router, request metrics, operational endpoints and the
//! embedded web assets (SDK, dashboard, demo). Handlers live in the
//! submodules; every error leaves through [`problem::ApiError`].

pub mod access;
pub mod admin;
pub mod events;
pub mod problem;
pub mod sessions;

use crate::app::App;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use problem::{ApiError, JsonBody};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tether_engine::Status;

pub fn router(app: Arc<App>) -> Router {
    use crate::matching::http as m;
    Router::new()
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::get))
        .route("/v1/sessions/{id}/heartbeat", post(sessions::heartbeat))
        .route("/v1/sessions/{id}/end", post(sessions::end))
        .route("/v1/sessions/{id}/complete", post(sessions::complete))
        .route("/v1/sessions/{id}/beacon", post(sessions::beacon))
        .route("/v1/sessions/{id}/participants", post(sessions::join))
        .route("/v1/sessions/{id}/participants/me/heartbeat", post(sessions::participant_heartbeat))
        .route("/v1/sessions/{id}/participants/me", delete(sessions::leave))
        .route("/v1/sessions/{id}/invites", post(sessions::create_invite))
        .route("/v1/invites/{token}/join", post(sessions::join_invite))
        .route("/v1/events", get(events::sse))
        .route("/v1/ws", get(events::ws))
        .route("/v1/kinds", get(admin::kinds))
        .route("/v1/admin/health", get(admin::health))
        .route("/v1/admin/cleanup", get(admin::cleanup_preview).post(admin::cleanup_execute))
        .route("/v1/demo/token", post(demo_token))
        .merge(m::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/", get(|| async { axum::response::Redirect::temporary("/admin") }))
        .fallback(static_asset)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Records latency and status per route; turns axum's bare 405 into problem+json.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let method = req.method().clone();
    let response = next.run(req).await;
    app.metrics.request_latency.observe(start.elapsed().as_secs_f64());
    let status = response.status();
    app.metrics.count_request(method.as_str(), &route, status.as_u16());
    if status == StatusCode::METHOD_NOT_ALLOWED && response.headers().get(header::CONTENT_TYPE).is_none() {
        return ApiError::new(status, "Method not allowed", format!("{method} is not allowed on {route}"))
            .into_response();
    }
    response
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(std::sync::atomic::Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::unavailable("recovering").into_response()
    }
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTokenBody {
    user_id: String,
}

/// Demo mode only: mints a user token without auth (loopback demos).
async fn demo_token(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<DemoTokenBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(json!({"token": app.auth.mint(id, None, 12 * 3600), "user_id": id})))
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
/// lets in-flight requests finish and flushes the journal.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timer = tokio::spawn(app.clone().run_timer());
    let flusher = tokio::spawn(app.clone().run_flusher());
    let purger = tokio::spawn(app.clone().run_purger());
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    let on_shutdown = app.clone();
    let router = router(app.clone());
    // Events are small writes on long-lived connections: without TCP_NODELAY,
    // Nagle's algorithm holds one back until the client's delayed ACK (~40 ms).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing event streams, finishing requests");
            let _ = on_shutdown.closing.send(true);
        })
        .await;
    let _ = app.closing.send(true);
    let _ = tokio::join!(timer, flusher, purger);
    app.flush_heartbeats();
    if let Err(e) = app.journal.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    result
}
