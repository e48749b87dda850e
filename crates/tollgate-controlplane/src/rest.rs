//! The REST/JSON management API (`/api/v1/...`), a thin layer over the service.
//!
//! Every handler carries its `#[utoipa::path]` and is registered with `routes!`, which
//! routes it and documents it at once: `GET /api/v1/openapi.json` ([`openapi`]) is the
//! router described.

use crate::ControlError;
use crate::service::{
    Actor, AliasView, BudgetPage, BudgetView, CreateAlias, CreateBudget, CreateKey, CreateModel, CreateProject,
    CreateProvider, CreateRoutingPolicy, CreateTeam, IncreaseBudget, KeyPage, KeyView, KeyWithSecret, LedgerPage,
    LedgerQuery, ListBudgets, ListKeys, ModelView, ProjectView, ProviderView, RotateKey, RoutingPolicyView, Service,
    TeamView, UpdateBudget, UpdateKey, UpdateModel, UpdateRoutingPolicy, UsageFormat, UsageQuery, UsageReport,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openapi::{
    BadRequest, Conflict, ErrorBody, ErrorDetail, Forbidden, InternalError, KeyStatusFilter, List, NotFound,
    PayloadTooLarge, Unauthorized, UsageFormatName, UsageScope, UsageWindow,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::{ScopeKind, Timestamp};
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

mod openapi;
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

/// Every route of the management API with its documentation: one `routes!` per path.
fn api() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_provider, list_providers))
        .routes(routes!(create_model, list_models))
        .routes(routes!(get_model, update_model))
        .routes(routes!(create_team, tenancy::list_teams))
        .routes(routes!(create_project, tenancy::list_projects))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .routes(routes!(create_budget, list_budgets))
        .routes(routes!(get_budget, update_budget, delete_budget))
        .routes(routes!(reset_budget))
        .routes(routes!(increase_budget))
        .routes(routes!(create_alias, list_aliases))
        .routes(routes!(get_alias, delete_alias))
        .routes(routes!(create_routing_policy, list_routing_policies))
        .routes(routes!(get_routing_policy, update_routing_policy, delete_routing_policy))
        .routes(routes!(usage))
        .routes(routes!(ledger))
        .merge(security::routes())
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

#[utoipa::path(
    post,
    path = "/api/v1/providers",
    tag = "providers",
    request_body = CreateProvider,
    responses((status = 201, description = "The provider; its credential only as a hint.", body = ProviderView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn create_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_provider(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/providers",
    tag = "providers",
    responses((status = 200, description = "Every provider.", body = List<ProviderView>), Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn list_providers(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_providers(&actor).await? }))
}

#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body = CreateModel,
    responses((status = 201, description = "The model.", body = ModelView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_model(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_model(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    request_body = CreateTeam,
    responses((status = 201, description = "The team.", body = TeamView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("admin")))
)]
async fn create_team(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_team(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/projects",
    tag = "projects",
    request_body = CreateProject,
    responses((status = 201, description = "The project.", body = ProjectView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("admin")))
)]
async fn create_project(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_project(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses((status = 201, description = "The key with its secret in `key`: shown this once, never again. An inline `budget` also needs `budgets:write`.", body = KeyWithSecret), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn create_key(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_key(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    params(("project" = Option<String>, Query, description = "Only keys of this project (id or name)."), ("principal" = Option<String>, Query, description = "Only keys of this principal."), ("status" = Option<KeyStatusFilter>, Query, description = "Only keys of this stored status."), ("tag" = Option<String>, Query, description = "Only keys carrying this tag."), ("after" = Option<String>, Query, description = "Cursor: `next_after` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of keys, oldest first; never their secrets. Besides the parameters below, any number of `metadata.K=V` parameters keep only keys whose metadata has `K` equal to `V`.", body = KeyPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:read")))
)]
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
            "limit" => filter.limit = Some(crate::service::parse_limit(&v)?),
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

#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key with its budgets; never its secret.", body = KeyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_key(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    request_body = UpdateKey,
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key as changed.", body = KeyView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn update_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_key(&actor, &id, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    request_body = Option<RotateKey>,
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key with its new secret in `key`, shown this once.", body = KeyWithSecret), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/revoke",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key, revoked; every gateway refuses it from the next snapshot on (403 `virtual_key_revoked`). Revoking twice is not an error.", body = KeyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn revoke_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.revoke_key(&actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/budgets",
    tag = "budgets",
    request_body = CreateBudget,
    responses((status = 201, description = "The budget.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn create_budget(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_budget(&actor, CreateBudget::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets",
    tag = "budgets",
    params(("scope" = Option<ScopeKind>, Query, description = "Only budgets of this scope kind."), ("scope_id" = Option<String>, Query, description = "Only budgets of this scope target (a team, project or organization may be given by name)."), ("after" = Option<String>, Query, description = "Cursor: `next_after` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of budgets.", body = BudgetPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:read")))
)]
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
            "limit" => filter.limit = Some(crate::service::parse_limit(&v)?),
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

#[utoipa::path(
    get,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget.", body = BudgetView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:read")))
)]
async fn get_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_budget(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    request_body = UpdateBudget,
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget as changed.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn update_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_budget(&actor, &id, UpdateBudget::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn delete_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_budget(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/budgets/{id}/reset",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget with its `epoch` bumped: its window starts empty on every gateway. The body is empty or `{}`.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/budgets/{id}/increase",
    tag = "budgets",
    request_body = IncreaseBudget,
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget with its temporary increase.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn increase_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.increase_budget(&actor, &id, IncreaseBudget::from_json(&body(b)?)?).await?))
}

// ------------------------------------------------------------------ model prices

#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, description = "The catalog with prices.", body = List<ModelView>), Unauthorized, InternalError)
)]
async fn list_models(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_models().await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's public name or id.")),
    responses((status = 200, description = "The model.", body = ModelView), NotFound, Unauthorized, InternalError)
)]
async fn get_model(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_model(&name).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/models/{name}",
    tag = "models",
    request_body = UpdateModel,
    params(("name" = String, Path, description = "The model's public name or id.")),
    responses((status = 200, description = "The model as changed.", body = ModelView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn update_model(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_model(&actor, &name, parse(&body(b)?)?).await?))
}

// ------------------------------------------------------------------ aliases and routing policies

#[utoipa::path(
    post,
    path = "/api/v1/aliases",
    tag = "routing",
    request_body = CreateAlias,
    responses((status = 201, description = "The alias.", body = AliasView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_alias(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_alias(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases",
    tag = "routing",
    responses((status = 200, description = "Every alias.", body = List<AliasView>), Unauthorized, InternalError)
)]
async fn list_aliases(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_aliases().await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases/{name}",
    tag = "routing",
    params(("name" = String, Path, description = "The alias.")),
    responses((status = 200, description = "The alias.", body = AliasView), NotFound, Unauthorized, InternalError)
)]
async fn get_alias(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_alias(&name).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/aliases/{name}",
    tag = "routing",
    params(("name" = String, Path, description = "The alias.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn delete_alias(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_alias(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/routing-policies",
    tag = "routing",
    request_body = CreateRoutingPolicy,
    responses((status = 201, description = "The policy with every field written out.", body = RoutingPolicyView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_routing_policy(&actor, CreateRoutingPolicy::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/routing-policies",
    tag = "routing",
    responses((status = 200, description = "Every routing policy.", body = List<RoutingPolicyView>), Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn list_routing_policies(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_routing_policies(&actor).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 200, description = "The policy.", body = RoutingPolicyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn get_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_routing_policy(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    request_body = UpdateRoutingPolicy,
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 200, description = "The policy as replaced.", body = RoutingPolicyView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn update_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_routing_policy(&actor, &id, UpdateRoutingPolicy::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn delete_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_routing_policy(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------------ usage and ledger

#[utoipa::path(
    get,
    path = "/api/v1/usage",
    tag = "usage",
    params(("scope" = Option<UsageScope>, Query, description = "With `scope_id`: only entries of this budget scope kind (`organization` or `org`, `team`, `project`, `principal`, `virtual_key` or `key`), or `tag` for entries whose key carried the tag `scope_id`."), ("scope_id" = Option<String>, Query, description = "The scope target; required with `scope`."), ("window" = Option<UsageWindow>, Query, description = "The range ending now: `1h`, `24h`, `7d`, `30d` or `mtd` (month-to-date, UTC). Not with `from`/`to`; default `30d`."), ("from" = Option<Timestamp>, Query, description = "Start of the range (inclusive), RFC 3339; instead of `window`."), ("to" = Option<Timestamp>, Query, description = "End of the range (exclusive), RFC 3339; default now; needs `from`."), ("group_by" = Option<String>, Query, description = "Comma-separated groups: `model` (the model that served), `requested_model` (the name the caller used), `day`, `hour`, `key`, `principal`, `tag`.", example = "model,day"), ("format" = Option<UsageFormatName>, Query, description = "`json` (default) or `csv`.")),
    responses((status = 200, description = "Totals over the range, and one list `by_<group>` per group asked for. With `format=csv`, RFC 4180 CSV: `group,value,requests,input_tokens,output_tokens,cached_input_tokens,cost_usd`, a `total` row first.", content((UsageReport = "application/json"), (String = "text/csv"))), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("usage:read")))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    tag = "usage",
    params(("scope" = Option<UsageScope>, Query, description = "With `scope_id`: only entries of this budget scope kind (`organization` or `org`, `team`, `project`, `principal`, `virtual_key` or `key`), or `tag` for entries whose key carried the tag `scope_id`."), ("scope_id" = Option<String>, Query, description = "The scope target; required with `scope`."), ("window" = Option<UsageWindow>, Query, description = "The range ending now: `1h`, `24h`, `7d`, `30d` or `mtd` (month-to-date, UTC). Not with `from`/`to`; default `30d`."), ("from" = Option<Timestamp>, Query, description = "Start of the range (inclusive), RFC 3339; instead of `window`."), ("to" = Option<Timestamp>, Query, description = "End of the range (exclusive), RFC 3339; default now; needs `from`."), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of ledger entries.", body = LedgerPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("usage:read")))
)]
async fn ledger(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.ledger(&actor, &LedgerQuery::parse(q, tollgate_core::Timestamp::now())?).await?))
}
