//! What the control plane holds now, read before planning: only the sections the file
//! touches, so a token bound to one project can apply a file of that project's keys.

use super::file::{File, project_ref};
use crate::cli::{authed, status_error};
use anyhow::Context;
use std::collections::HashMap;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// Page size of the list calls.
const PAGE: u32 = 1000;

/// The objects apply compares the file with.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// By name.
    pub(crate) providers: HashMap<String, v1::ProviderInfo>,
    /// By public name.
    pub(crate) models: HashMap<String, v1::ModelInfo>,
    pub(crate) orgs: Vec<v1::OrganizationInfo>,
    pub(crate) teams: Vec<v1::TeamInfo>,
    pub(crate) projects: Vec<v1::ProjectInfo>,
    pub(crate) budgets: Vec<v1::BudgetInfo>,
    /// Keys not revoked, by project id and name.
    pub(crate) keys: HashMap<(String, String), Vec<v1::KeyInfo>>,
}

/// Reads what `file` needs; an error names what could not be read.
pub(crate) async fn read(client: &mut AdminServiceClient<Channel>, token: &str, file: &File) -> anyhow::Result<State> {
    let mut state = State::default();
    if !file.providers.is_empty() || !file.models.is_empty() {
        let resp = client.list_providers(authed(v1::ListProvidersRequest {}, token)?).await;
        let providers = resp.map_err(status_error).context("reading providers")?.into_inner().providers;
        state.providers = providers.into_iter().map(|p| (p.name.clone(), p)).collect();
    }
    if !file.models.is_empty() {
        let resp = client.list_models(authed(v1::ListModelsRequest {}, token)?).await;
        let models = resp.map_err(status_error).context("reading models")?.into_inner().models;
        state.models = models.into_iter().map(|m| (m.name.clone(), m)).collect();
    }
    let org_budgets = file.budgets.iter().any(|b| b.scope == tollgate_core::ScopeKind::Organization);
    if !file.organizations.is_empty() || !file.teams.is_empty() || org_budgets {
        let resp = client.list_organizations(authed(v1::ListOrganizationsRequest {}, token)?).await;
        state.orgs = resp.map_err(status_error).context("reading organizations")?.into_inner().organizations;
    }
    let has_budgets = !file.budgets.is_empty() || file.keys.iter().any(|k| k.budget.is_some());
    if !file.teams.is_empty() || has_budgets || !file.keys.is_empty() {
        let resp = client.list_teams(authed(v1::ListTeamsRequest { organization: None }, token)?).await;
        state.teams = resp.map_err(status_error).context("reading teams")?.into_inner().teams;
        let resp = client.list_projects(authed(v1::ListProjectsRequest { team: None }, token)?).await;
        state.projects = resp.map_err(status_error).context("reading projects")?.into_inner().projects;
    }
    if has_budgets {
        let mut after = None;
        loop {
            let req = v1::ListBudgetsRequest { limit: PAGE, after, ..Default::default() };
            let page =
                client.list_budgets(authed(req, token)?).await.map_err(status_error).context("reading budgets")?;
            let page = page.into_inner();
            state.budgets.extend(page.budgets);
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    // Keys of the projects the file's keys are in, where those exist.
    let mut project_ids: Vec<String> = Vec::new();
    for k in &file.keys {
        if let Some((team, project)) = project_ref(&k.project) {
            let teams: Vec<&str> = state.teams.iter().filter(|t| t.name == team).map(|t| t.id.as_str()).collect();
            project_ids.extend(
                state
                    .projects
                    .iter()
                    .filter(|p| p.name == project && teams.contains(&p.team_id.as_str()))
                    .map(|p| p.id.clone()),
            );
        }
    }
    project_ids.sort();
    project_ids.dedup();
    for project in project_ids {
        let mut after = None;
        loop {
            let req = v1::ListKeysRequest {
                project: Some(project.clone()),
                status: Some("active".into()),
                limit: PAGE,
                after,
                ..Default::default()
            };
            let page = client.list_keys(authed(req, token)?).await.map_err(status_error).context("reading keys")?;
            let page = page.into_inner();
            for key in page.keys {
                if let Some(name) = key.name.clone() {
                    state.keys.entry((key.project_id.clone(), name)).or_default().push(key);
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(state)
}
