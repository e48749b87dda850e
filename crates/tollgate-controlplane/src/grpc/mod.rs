//! The gRPC services: config distribution (`Watch`, `watch.rs`), the ledger push
//! (`usage.rs`) and admin operations, over the same service layer as REST. One module
//! per resource (the same names as the service's and REST's) holds its RPCs and the
//! wire conversions; the trait impls here only dispatch to them.

use crate::ControlError;
use crate::service::{Actor, Service};
use std::sync::Arc;
use tollgate_core::Timestamp;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

mod audit;
mod budgets;
mod keys;
mod models;
mod providers;
mod routing;
mod tenancy;
mod tokens;
mod usage;
mod watch;

pub(crate) use usage::LedgerApi;
pub(crate) use watch::ConfigApi;

/// The caller, authenticated from the `authorization: Bearer <admin token>` metadata.
/// What it may do is checked by the service (`Service::authorize`).
async fn actor<T>(svc: &Service, req: &Request<T>) -> Result<Actor, Status> {
    let bearer = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()));
    svc.authenticate(bearer).await.map_err(|e| e.grpc())
}

/// A gateway's call: it receives every tenant's configuration (credentials and the key
/// pepper included) or writes every tenant's ledger, so it needs an unbound `admin` token.
async fn gateway<T>(svc: &Service, req: &Request<T>) -> Result<(), Status> {
    let actor = actor(svc, req).await?;
    svc.authorize_gateway(&actor).await.map_err(|e| e.grpc())
}

/// `AdminService`: every management operation for `tollctl` and Rust callers.
pub(crate) struct AdminApi {
    svc: Arc<Service>,
}

impl AdminApi {
    /// Serves admin operations over `svc`.
    pub(crate) fn new(svc: Arc<Service>) -> Self {
        AdminApi { svc }
    }
}

/// `SecurityService`: admin tokens and the audit trail.
pub(crate) struct SecurityApi {
    svc: Arc<Service>,
}

impl SecurityApi {
    /// Serves `svc`.
    pub(crate) fn new(svc: Arc<Service>) -> Self {
        SecurityApi { svc }
    }
}

/// Parses a wire enum or value, naming the field on error.
fn field<T>(name: &str, text: &str) -> Result<T, ControlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| ControlError::invalid(name, format!("{e}")))
}

fn opt_field<T>(name: &str, text: Option<String>) -> Result<Option<T>, ControlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.map(|t| field(name, &t)).transpose()
}

/// A JSON field of a request (`name` for the error); the service validates what is in it.
fn field_json(name: &str, text: &str) -> Result<serde_json::Value, ControlError> {
    serde_json::from_str(text).map_err(|e| ControlError::invalid(name, format!("not JSON: {e}")))
}

/// A field that can be set or cleared: `Some(Some(v))` sets, `Some(None)` clears.
fn settable<T>(name: &str, set: Option<T>, clear: bool) -> Result<Option<Option<T>>, ControlError> {
    match (set, clear) {
        (Some(_), true) => Err(ControlError::invalid(name, "set and cleared in one request")),
        (Some(v), false) => Ok(Some(Some(v))),
        (None, true) => Ok(Some(None)),
        (None, false) => Ok(None),
    }
}

/// An optional RFC 3339 instant of a request; empty means none.
fn time(name: &str, text: Option<String>) -> Result<Option<Timestamp>, ControlError> {
    text.filter(|t| !t.is_empty())
        .map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| ControlError::invalid(name, e.to_string())))
        .transpose()
}

// Each RPC is served by its resource's module; these impls only dispatch.
#[tonic::async_trait]
impl v1::admin_service_server::AdminService for AdminApi {
    async fn list_models(
        &self,
        req: Request<v1::ListModelsRequest>,
    ) -> Result<Response<v1::ListModelsResponse>, Status> {
        models::list_models(&self.svc, req).await
    }

    async fn set_model_price(&self, req: Request<v1::SetModelPriceRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        models::set_model_price(&self.svc, req).await
    }

    async fn get_usage(&self, req: Request<v1::GetUsageRequest>) -> Result<Response<v1::GetUsageResponse>, Status> {
        usage::get_usage(&self.svc, req).await
    }

    async fn create_alias(&self, req: Request<v1::CreateAliasRequest>) -> Result<Response<v1::AliasInfo>, Status> {
        routing::create_alias(&self.svc, req).await
    }

    async fn list_aliases(
        &self,
        req: Request<v1::ListAliasesRequest>,
    ) -> Result<Response<v1::ListAliasesResponse>, Status> {
        routing::list_aliases(&self.svc, req).await
    }

    async fn delete_alias(
        &self,
        req: Request<v1::DeleteAliasRequest>,
    ) -> Result<Response<v1::DeleteAliasResponse>, Status> {
        routing::delete_alias(&self.svc, req).await
    }

    async fn create_routing_policy(
        &self,
        req: Request<v1::CreateRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        routing::create_routing_policy(&self.svc, req).await
    }

    async fn list_routing_policies(
        &self,
        req: Request<v1::ListRoutingPoliciesRequest>,
    ) -> Result<Response<v1::ListRoutingPoliciesResponse>, Status> {
        routing::list_routing_policies(&self.svc, req).await
    }

    async fn get_routing_policy(
        &self,
        req: Request<v1::GetRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        routing::get_routing_policy(&self.svc, req).await
    }

    async fn update_routing_policy(
        &self,
        req: Request<v1::UpdateRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        routing::update_routing_policy(&self.svc, req).await
    }

    async fn delete_routing_policy(
        &self,
        req: Request<v1::DeleteRoutingPolicyRequest>,
    ) -> Result<Response<v1::DeleteRoutingPolicyResponse>, Status> {
        routing::delete_routing_policy(&self.svc, req).await
    }

    async fn create_key(&self, req: Request<v1::CreateKeyRequest>) -> Result<Response<v1::CreateKeyResponse>, Status> {
        keys::create_key(&self.svc, req).await
    }

    async fn list_keys(&self, req: Request<v1::ListKeysRequest>) -> Result<Response<v1::ListKeysResponse>, Status> {
        keys::list_keys(&self.svc, req).await
    }

    async fn get_key(&self, req: Request<v1::GetKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        keys::get_key(&self.svc, req).await
    }

    async fn rotate_key(&self, req: Request<v1::RotateKeyRequest>) -> Result<Response<v1::RotateKeyResponse>, Status> {
        keys::rotate_key(&self.svc, req).await
    }

    async fn update_key(&self, req: Request<v1::UpdateKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        keys::update_key(&self.svc, req).await
    }

    async fn revoke_key(&self, req: Request<v1::RevokeKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        keys::revoke_key(&self.svc, req).await
    }

    async fn create_budget(&self, req: Request<v1::CreateBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        budgets::create_budget(&self.svc, req).await
    }

    async fn list_budgets(
        &self,
        req: Request<v1::ListBudgetsRequest>,
    ) -> Result<Response<v1::ListBudgetsResponse>, Status> {
        budgets::list_budgets(&self.svc, req).await
    }

    async fn get_budget(&self, req: Request<v1::GetBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        budgets::get_budget(&self.svc, req).await
    }

    async fn update_budget(&self, req: Request<v1::UpdateBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        budgets::update_budget(&self.svc, req).await
    }

    async fn delete_budget(
        &self,
        req: Request<v1::DeleteBudgetRequest>,
    ) -> Result<Response<v1::DeleteBudgetResponse>, Status> {
        budgets::delete_budget(&self.svc, req).await
    }

    async fn reset_budget(&self, req: Request<v1::ResetBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        budgets::reset_budget(&self.svc, req).await
    }

    async fn increase_budget(
        &self,
        req: Request<v1::IncreaseBudgetRequest>,
    ) -> Result<Response<v1::BudgetInfo>, Status> {
        budgets::increase_budget(&self.svc, req).await
    }

    async fn create_provider(
        &self,
        req: Request<v1::CreateProviderRequest>,
    ) -> Result<Response<v1::ProviderInfo>, Status> {
        providers::create_provider(&self.svc, req).await
    }

    async fn list_providers(
        &self,
        req: Request<v1::ListProvidersRequest>,
    ) -> Result<Response<v1::ListProvidersResponse>, Status> {
        providers::list_providers(&self.svc, req).await
    }

    async fn get_provider(&self, req: Request<v1::GetProviderRequest>) -> Result<Response<v1::ProviderInfo>, Status> {
        providers::get_provider(&self.svc, req).await
    }

    async fn update_provider(
        &self,
        req: Request<v1::UpdateProviderRequest>,
    ) -> Result<Response<v1::ProviderInfo>, Status> {
        providers::update_provider(&self.svc, req).await
    }

    async fn create_model(&self, req: Request<v1::CreateModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        models::create_model(&self.svc, req).await
    }

    async fn get_model(&self, req: Request<v1::GetModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        models::get_model(&self.svc, req).await
    }

    async fn update_model(&self, req: Request<v1::UpdateModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        models::update_model(&self.svc, req).await
    }

    async fn create_organization(
        &self,
        req: Request<v1::CreateOrganizationRequest>,
    ) -> Result<Response<v1::OrganizationInfo>, Status> {
        tenancy::create_organization(&self.svc, req).await
    }

    async fn list_organizations(
        &self,
        req: Request<v1::ListOrganizationsRequest>,
    ) -> Result<Response<v1::ListOrganizationsResponse>, Status> {
        tenancy::list_organizations(&self.svc, req).await
    }

    async fn get_organization(
        &self,
        req: Request<v1::GetOrganizationRequest>,
    ) -> Result<Response<v1::OrganizationInfo>, Status> {
        tenancy::get_organization(&self.svc, req).await
    }

    async fn create_team(&self, req: Request<v1::CreateTeamRequest>) -> Result<Response<v1::TeamInfo>, Status> {
        tenancy::create_team(&self.svc, req).await
    }

    async fn list_teams(&self, req: Request<v1::ListTeamsRequest>) -> Result<Response<v1::ListTeamsResponse>, Status> {
        tenancy::list_teams(&self.svc, req).await
    }

    async fn get_team(&self, req: Request<v1::GetTeamRequest>) -> Result<Response<v1::TeamInfo>, Status> {
        tenancy::get_team(&self.svc, req).await
    }

    async fn create_project(
        &self,
        req: Request<v1::CreateProjectRequest>,
    ) -> Result<Response<v1::ProjectInfo>, Status> {
        tenancy::create_project(&self.svc, req).await
    }

    async fn list_projects(
        &self,
        req: Request<v1::ListProjectsRequest>,
    ) -> Result<Response<v1::ListProjectsResponse>, Status> {
        tenancy::list_projects(&self.svc, req).await
    }

    async fn get_project(&self, req: Request<v1::GetProjectRequest>) -> Result<Response<v1::ProjectInfo>, Status> {
        tenancy::get_project(&self.svc, req).await
    }

    async fn list_principals(
        &self,
        req: Request<v1::ListPrincipalsRequest>,
    ) -> Result<Response<v1::ListPrincipalsResponse>, Status> {
        tenancy::list_principals(&self.svc, req).await
    }

    async fn get_principal(
        &self,
        req: Request<v1::GetPrincipalRequest>,
    ) -> Result<Response<v1::PrincipalInfo>, Status> {
        tenancy::get_principal(&self.svc, req).await
    }

    async fn revoke_principal_keys(
        &self,
        req: Request<v1::RevokePrincipalKeysRequest>,
    ) -> Result<Response<v1::RevokePrincipalKeysResponse>, Status> {
        tenancy::revoke_principal_keys(&self.svc, req).await
    }
}

#[tonic::async_trait]
impl v1::security_service_server::SecurityService for SecurityApi {
    async fn create_token(
        &self,
        req: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreateTokenResponse>, Status> {
        tokens::create_token(&self.svc, req).await
    }

    async fn list_tokens(
        &self,
        req: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        tokens::list_tokens(&self.svc, req).await
    }

    async fn revoke_token(&self, req: Request<v1::RevokeTokenRequest>) -> Result<Response<v1::TokenInfo>, Status> {
        tokens::revoke_token(&self.svc, req).await
    }

    async fn list_audit(&self, req: Request<v1::ListAuditRequest>) -> Result<Response<v1::ListAuditResponse>, Status> {
        audit::list_audit(&self.svc, req).await
    }

    async fn verify_audit(
        &self,
        req: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        audit::verify_audit(&self.svc, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_set_cleared_or_left_alone_never_both() {
        assert_eq!(settable("rpm", Some(5), false).unwrap(), Some(Some(5)));
        assert_eq!(settable::<u32>("rpm", None, true).unwrap(), Some(None));
        assert_eq!(settable::<u32>("rpm", None, false).unwrap(), None);
        let e = settable("rpm", Some(5), true).unwrap_err().to_string();
        assert!(e.contains("rpm"), "{e}");
    }
}
