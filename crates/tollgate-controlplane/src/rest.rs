//! The REST/JSON management API (`/api/v1/...`), a thin layer over the service.

use crate::ControlError;
use crate::service::{
    Actor, CreateBudget, CreateRoutingPolicy, IncreaseBudget, LedgerQuery, ListBudgets, ListKeys, Service,
    UpdateBudget, UpdateRoutingPolicy, UsageFormat, UsageQuery,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest management request body.
const MAX_BODY: usize = 1024 * 1024;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code) = self.http();
        let body =
            serde_json::json!({"error": {"code": code, "message": self.public_message(), "field": self.field()}});
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

mod security;
mod tenancy;

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

/// Parses a JSON body, naming the offending field on error.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    if body.is_empty() {
        return Err(ControlError::BadBody("request body must be a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| ControlError::BadBody(format!("invalid JSON body: {e}")))
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn ok<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// Builds the management router.
pub(crate) fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/providers", post(create_provider).get(list_providers))
        .route("/api/v1/models", post(create_model).get(list_models))
        .route("/api/v1/models/{name}", get(get_model).patch(update_model))
        .route("/api/v1/teams", post(create_team).get(tenancy::list_teams))
        .route("/api/v1/projects", post(create_project).get(tenancy::list_projects))
        .route("/api/v1/keys", post(create_key).get(list_keys))
        .route("/api/v1/keys/{id}", get(get_key).patch(update_key))
        .route("/api/v1/keys/{id}/rotate", post(rotate_key))
        .route("/api/v1/keys/{id}/revoke", post(revoke_key))
        .route("/api/v1/budgets", post(create_budget).get(list_budgets))
        .route("/api/v1/budgets/{id}", get(get_budget).patch(update_budget).delete(delete_budget))
        .route("/api/v1/budgets/{id}/reset", post(reset_budget))
        .route("/api/v1/budgets/{id}/increase", post(increase_budget))
        .route("/api/v1/aliases", post(create_alias).get(list_aliases))
        .route("/api/v1/aliases/{name}", get(get_alias).delete(delete_alias))
        .route("/api/v1/routing-policies", post(create_routing_policy).get(list_routing_policies))
        .route(
            "/api/v1/routing-policies/{id}",
            get(get_routing_policy).patch(update_routing_policy).delete(delete_routing_policy),
        )
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/ledger", get(ledger))
        .merge(security::routes())
        .merge(tenancy::routes())
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .fallback(|| async { ControlError::NotFound { kind: "endpoint", id: String::new() } })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(svc)
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn body(b: Body) -> Result<Bytes, ControlError> {
    b.map_err(|e| ControlError::BadBody(format!("could not read body (at most {MAX_BODY} bytes): {e}")))
}

async fn create_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_provider(&actor, parse(&body(b)?)?).await?))
}

async fn list_providers(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_providers(&actor).await?})))
}

async fn create_model(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_model(&actor, parse(&body(b)?)?).await?))
}

async fn create_team(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_team(&actor, parse(&body(b)?)?).await?))
}

async fn create_project(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_project(&actor, parse(&body(b)?)?).await?))
}

async fn create_key(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_key(&actor, parse(&body(b)?)?).await?))
}

async fn list_keys(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut filter = ListKeys::default();
    for (k, v) in q {
        match k.as_str() {
            "project" => filter.project = Some(v),
            "principal" => filter.principal = Some(v),
            "status" => filter.status = Some(v),
            "tag" => filter.tag = Some(v),
            "after" => filter.after = Some(v),
            "limit" => {
                filter.limit =
                    Some(v.parse().map_err(|_| ControlError::invalid("limit", "must be a positive integer"))?)
            }
            other => match other.strip_prefix("metadata.") {
                Some(mk) if !mk.is_empty() => filter.metadata.push((mk.to_owned(), v)),
                _ => {
                    return Err(ControlError::invalid(
                        other.chars().take(64).collect::<String>(),
                        "unknown query parameter",
                    ));
                }
            },
        }
    }
    filter.metadata.sort();
    Ok(ok(svc.list_keys(&actor, filter).await?))
}

async fn get_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_key(&actor, &id).await?))
}

async fn update_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_key(&actor, &id, parse(&body(b)?)?).await?))
}

async fn rotate_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    let b = body(b)?;
    // An empty body means the defaults (grace period 0).
    let input = if b.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse(&b)? };
    Ok(ok(svc.rotate_key(&actor, &id, input).await?))
}

async fn revoke_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.revoke_key(&actor, &id).await?))
}

async fn create_budget(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_budget(&actor, CreateBudget::from_json(&body(b)?)?).await?))
}

async fn list_budgets(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut filter = ListBudgets::default();
    for (k, v) in q {
        match k.as_str() {
            "scope" => filter.scope = Some(v.parse().map_err(|e| ControlError::invalid("scope", format!("{e}")))?),
            "scope_id" => filter.scope_id = Some(v),
            "after" => filter.after = Some(v),
            "limit" => {
                filter.limit =
                    Some(v.parse().map_err(|_| ControlError::invalid("limit", "must be a positive integer"))?)
            }
            other => {
                return Err(ControlError::invalid(
                    other.chars().take(64).collect::<String>(),
                    "unknown query parameter",
                ));
            }
        }
    }
    Ok(ok(svc.list_budgets(&actor, filter).await?))
}

async fn get_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_budget(&actor, &id).await?))
}

async fn update_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_budget(&actor, &id, UpdateBudget::from_json(&body(b)?)?).await?))
}

async fn delete_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_budget(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    // The body is empty or `{}`: a reset takes no options.
    crate::service::no_fields(&body(b)?)?;
    Ok(ok(svc.reset_budget(&actor, &id).await?))
}

async fn increase_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.increase_budget(&actor, &id, IncreaseBudget::from_json(&body(b)?)?).await?))
}

// ------------------------------------------------------------------ model prices

async fn list_models(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_models().await?})))
}

async fn get_model(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_model(&name).await?))
}

async fn update_model(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_model(&actor, &name, parse(&body(b)?)?).await?))
}

// ------------------------------------------------------------------ aliases and routing policies

async fn create_alias(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_alias(&actor, parse(&body(b)?)?).await?))
}

async fn list_aliases(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_aliases().await?})))
}

async fn get_alias(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_alias(&name).await?))
}

async fn delete_alias(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_alias(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_routing_policy(&actor, CreateRoutingPolicy::from_json(&body(b)?)?).await?))
}

async fn list_routing_policies(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_routing_policies(&actor).await?})))
}

async fn get_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_routing_policy(&actor, &id).await?))
}

async fn update_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_routing_policy(&actor, &id, UpdateRoutingPolicy::from_json(&body(b)?)?).await?))
}

async fn delete_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_routing_policy(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------------ usage and ledger

async fn usage(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let q = UsageQuery::parse(q, tollgate_core::Timestamp::now())?;
    let report = svc.usage(&actor, &q).await?;
    Ok(match q.format {
        UsageFormat::Json => ok(report.to_json()),
        UsageFormat::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], report.to_csv()).into_response(),
    })
}

async fn ledger(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.ledger(&actor, &LedgerQuery::parse(q, tollgate_core::Timestamp::now())?).await?))
}
