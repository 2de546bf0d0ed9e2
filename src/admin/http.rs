//! The HTTP endpoint (hyper 1, HTTP/1.1): `GET /metrics` (Prometheus text), `GET /live`,
//! `GET /ready` (503 while draining or while no primary is known), `GET /backends` (JSON),
//! `GET /digests` (JSON: the top statement digests with their normalized text) and `POST /reload`.
//! `/backends`, `/digests` and `/reload` need `admin.http_token` when one is set. Unknown paths get 404, a known path with another method 405 with `Allow`.
//!
//! One task per connection; header reads, the whole connection and a reload each have a limit.
//! The endpoint keeps serving during a graceful drain, so readiness can report it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::show::backend_views;
use super::Context;

/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one HTTP connection (keep-alive included).
const CONNECTION_LIMIT: Duration = Duration::from_secs(120);
/// How long `POST /reload` waits for the reload.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

/// Serves HTTP until `stop` turns true.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(client_addr = %peer, error = %err, "http connection failed"),
                Err(_) => tracing::debug!(client_addr = %peer, "http connection closed after its time limit"),
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    reply(status, "application/json", value.to_string())
}

/// True when the request may use a control endpoint: no token is configured (the listener is
/// then loopback, see config validation), or it carries the token (compared in constant time).
fn is_authorized(ctx: &Context, req: &Request<Incoming>) -> bool {
    let config = ctx.shared.config.load();
    let token = config.admin.http_token.as_bytes();
    if token.is_empty() {
        return true;
    }
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    presented.len() == token.len() && bool::from(subtle::ConstantTimeEq::ct_eq(presented, token))
}

/// Answers one request.
pub async fn handle(ctx: &Context, req: Request<Incoming>) -> Response<Body> {
    let allowed = match req.uri().path() {
        "/metrics" | "/live" | "/ready" | "/backends" | "/digests" => Method::GET,
        "/reload" => Method::POST,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /live, /ready, /backends, /digests, POST /reload\n",
            )
        }
    };
    let method = req.method();
    if *method != allowed && !(allowed == Method::GET && *method == Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allowed}\n"));
        let allow = if allowed == Method::GET { "GET, HEAD" } else { "POST" };
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        return response;
    }
    // `/digests` carries statement text (client input): like the admin port, not for anyone.
    let control = matches!(req.uri().path(), "/reload" | "/backends" | "/digests");
    if control && !is_authorized(ctx, &req) {
        let mut response =
            text(StatusCode::UNAUTHORIZED, "this endpoint needs Authorization: Bearer <admin.http_token>\n");
        response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => metrics(ctx),
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => ready(ctx),
        "/backends" => match serde_json::to_value(backend_views(&ctx.shared)) {
            Ok(value) => json(StatusCode::OK, &value),
            Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
        },
        "/digests" => json(StatusCode::OK, &digests(ctx)),
        _ => reload(ctx).await,
    }
}

/// The digest store as JSON, most frequent first: the ids `/metrics` labels series with, and the
/// normalized text (at most `stats::TEXT_LIMIT` bytes) those ids stand for.
fn digests(ctx: &Context) -> serde_json::Value {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let rows = ctx.shared.ops.metrics.digests.top(usize::MAX).into_iter().map(|d| {
        serde_json::json!({
            "digest": d.id(),
            "count": d.count,
            "errors": d.errors,
            "rows": d.rows,
            "mean_ms": ms(d.mean()),
            "p50_ms": ms(d.quantile(0.5)),
            "p99_ms": ms(d.quantile(0.99)),
            "text": &*d.text,
        })
    });
    serde_json::Value::Array(rows.collect())
}

fn metrics(ctx: &Context) -> Response<Body> {
    match ctx.metrics_text() {
        Ok(body) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body),
        Err(err) => {
            tracing::error!(error = %err, "cannot encode metrics");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
        }
    }
}

fn ready(ctx: &Context) -> Response<Body> {
    if ctx.shared.ops.drain.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if ctx.shared.topology.load().primary.is_none() {
        text(StatusCode::SERVICE_UNAVAILABLE, "no primary known\n")
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

async fn reload(ctx: &Context) -> Response<Body> {
    match ctx.reload.request(RELOAD_WAIT).await {
        Ok(Ok(changes)) => json(StatusCode::OK, &serde_json::json!({ "ok": true, "changes": changes })),
        Ok(Err(error)) => json(StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!({ "ok": false, "error": error })),
        Err(err) => {
            json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "ok": false, "error": err.to_string() }))
        }
    }
}
