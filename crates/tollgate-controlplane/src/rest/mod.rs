//! The REST/JSON management API (`/api/v1/...`), a thin layer over the service.
//!
//! One module per resource (the same names as the service's), each with its handlers and
//! its `routes()`. Every handler carries its `#[utoipa::path]` and is registered with
//! `routes!`, which routes it and documents it at once: `GET /api/v1/openapi.json`
//! ([`openapi`]) is the router described.

use crate::ControlError;
use crate::service::{Actor, Service};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openapi::{ErrorBody, ErrorDetail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest management request body.
const MAX_BODY: usize = 1024 * 1024;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code) = self.http();
        let body = ErrorBody { error: ErrorDetail { code, message: self.public_message(), field: self.field() } };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

mod audit;
mod budgets;
mod keys;
mod models;
mod openapi;
mod providers;
mod routing;
mod tenancy;
mod tokens;
mod usage;

/// The caller, authenticated from `Authorization: Bearer <admin token>`. What it may do
/// is checked by the service (`Service::authorize`), the same for REST and gRPC.
struct Auth(Actor);

impl FromRequestParts<Arc<Service>> for Auth {
    type Rejection = ControlError;

    async fn from_request_parts(parts: &mut Parts, svc: &Arc<Service>) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()));
        svc.authenticate(bearer).await.map(Auth)
    }
}

/// Parses a JSON body through the one body reader, naming the offending field on error.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    crate::body::json(body)
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn ok<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// Every route of the management API with its documentation: each resource's module
/// registers its own with one `routes!` per path.
fn api() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .merge(providers::routes())
        .merge(models::routes())
        .merge(keys::routes())
        .merge(budgets::routes())
        .merge(routing::routes())
        .merge(usage::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
        .merge(tenancy::routes())
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
}

/// Builds the management router.
pub(crate) fn router(svc: Arc<Service>) -> Router {
    let (router, _) = api().split_for_parts();
    router
        .fallback(|| async { ControlError::NotFound { kind: "endpoint", id: String::new() } })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(svc)
}

/// The OpenAPI document of this API, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::document()).into_response()
}

/// Liveness of the control plane.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The control plane is up.", body = Object, example = json!({"status": "ok"}))))]
async fn healthz() -> Response {
    ok(serde_json::json!({"status": "ok"}))
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn body(b: Body) -> Result<Bytes, ControlError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ControlError::TooLarge { limit: MAX_BODY }
        } else {
            ControlError::BadBody(format!("could not read body (at most {MAX_BODY} bytes): {e}"))
        }
    })
}
