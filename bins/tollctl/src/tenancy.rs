//! `tollctl orgs ...`, `teams ...`, `projects ...` and `principals ...`: who the keys
//! belong to.

use crate::budgets::budget_json;
use crate::cli::{Output, authed, print_json, print_table, status_error};
use clap::Subcommand;
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// `tollctl orgs ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum OrgsCommand {
    /// Create an organization.
    Create {
        /// Unique name.
        name: String,
    },
    /// List organizations.
    List,
    /// Show one organization.
    Get {
        /// Organization id or name.
        organization: String,
    },
}

/// `tollctl teams ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum TeamsCommand {
    /// Create a team.
    Create {
        /// Name, unique in its organization.
        name: String,
        /// Organization id or name (default: the default organization).
        #[arg(long)]
        org: Option<String>,
    },
    /// List teams.
    List {
        /// Only this organization's teams (id or name).
        #[arg(long)]
        org: Option<String>,
    },
    /// Show one team.
    Get {
        /// Team id or name.
        team: String,
    },
}

/// `tollctl projects ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProjectsCommand {
    /// Create a project in a team.
    Create {
        /// Name, unique in its team.
        name: String,
        /// Team id or name.
        #[arg(long)]
        team: String,
    },
    /// List projects.
    List {
        /// Only this team's projects (id or name).
        #[arg(long)]
        team: Option<String>,
    },
    /// Show one project.
    Get {
        /// Project id or name.
        project: String,
    },
}

/// `tollctl principals ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PrincipalsCommand {
    /// List principals that hold keys.
    List {
        /// Only principals with keys in this project (id or name).
        #[arg(long)]
        project: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one principal: its keys, projects and budgets.
    Get {
        /// Principal id.
        id: String,
    },
    /// Revoke every active key of the principal (within the token's reach).
    RevokeKeys {
        /// Principal id.
        id: String,
    },
}

fn org_json(o: &v1::OrganizationInfo) -> serde_json::Value {
    json!({"id": o.id, "name": o.name, "created_at": o.created_at})
}

fn team_json(t: &v1::TeamInfo) -> serde_json::Value {
    json!({"id": t.id, "name": t.name, "org_id": t.org_id, "created_at": t.created_at})
}

fn project_json(p: &v1::ProjectInfo) -> serde_json::Value {
    json!({"id": p.id, "name": p.name, "team_id": p.team_id, "org_id": p.org_id, "created_at": p.created_at})
}

fn principal_json(p: &v1::PrincipalInfo) -> serde_json::Value {
    json!({
        "id": p.id, "keys_active": p.keys_active, "keys_expired": p.keys_expired, "keys_revoked": p.keys_revoked,
        "projects": p.project_ids,
        "budgets": p.budgets.iter().map(budget_json).collect::<Vec<_>>(),
    })
}

/// Prints one object or a `{"data": [...]}` list.
fn show<T>(output: Output, items: &[T], one: bool, json: fn(&T) -> serde_json::Value, table: fn(&[T])) {
    match output {
        Output::Json if one => items.iter().for_each(|i| print_json(&json(i))),
        Output::Json => print_json(&json!({"data": items.iter().map(json).collect::<Vec<_>>()})),
        Output::Table => table(items),
    }
}

fn print_orgs(orgs: &[v1::OrganizationInfo]) {
    let rows: Vec<[String; 3]> = orgs.iter().map(|o| [o.id.clone(), o.name.clone(), o.created_at.clone()]).collect();
    print_table(&["ID", "NAME", "CREATED"], &rows);
}

fn print_teams(teams: &[v1::TeamInfo]) {
    let rows: Vec<[String; 4]> =
        teams.iter().map(|t| [t.id.clone(), t.name.clone(), t.org_id.clone(), t.created_at.clone()]).collect();
    print_table(&["ID", "NAME", "ORG", "CREATED"], &rows);
}

fn print_projects(projects: &[v1::ProjectInfo]) {
    let rows: Vec<[String; 4]> =
        projects.iter().map(|p| [p.id.clone(), p.name.clone(), p.team_id.clone(), p.created_at.clone()]).collect();
    print_table(&["ID", "NAME", "TEAM", "CREATED"], &rows);
}

fn print_principals(principals: &[v1::PrincipalInfo]) {
    let rows: Vec<[String; 6]> = principals
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                p.keys_active.to_string(),
                p.keys_expired.to_string(),
                p.keys_revoked.to_string(),
                p.project_ids.join(","),
                p.budgets.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    print_table(&["ID", "ACTIVE_KEYS", "EXPIRED_KEYS", "REVOKED_KEYS", "PROJECTS", "BUDGETS"], &rows);
}

/// Runs an `orgs` command.
pub(crate) async fn orgs(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: OrgsCommand,
) -> anyhow::Result<()> {
    let (orgs, one) = match cmd {
        OrgsCommand::Create { name } => {
            let req = authed(v1::CreateOrganizationRequest { name }, token)?;
            (vec![client.create_organization(req).await.map_err(status_error)?.into_inner()], true)
        }
        OrgsCommand::List => {
            let req = authed(v1::ListOrganizationsRequest {}, token)?;
            (client.list_organizations(req).await.map_err(status_error)?.into_inner().organizations, false)
        }
        OrgsCommand::Get { organization } => {
            let req = authed(v1::GetOrganizationRequest { organization }, token)?;
            (vec![client.get_organization(req).await.map_err(status_error)?.into_inner()], true)
        }
    };
    show(output, &orgs, one, org_json, print_orgs);
    Ok(())
}

/// Runs a `teams` command.
pub(crate) async fn teams(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: TeamsCommand,
) -> anyhow::Result<()> {
    let (teams, one) = match cmd {
        TeamsCommand::Create { name, org } => {
            let req = authed(v1::CreateTeamRequest { name, organization: org }, token)?;
            (vec![client.create_team(req).await.map_err(status_error)?.into_inner()], true)
        }
        TeamsCommand::List { org } => {
            let req = authed(v1::ListTeamsRequest { organization: org }, token)?;
            (client.list_teams(req).await.map_err(status_error)?.into_inner().teams, false)
        }
        TeamsCommand::Get { team } => {
            let req = authed(v1::GetTeamRequest { team }, token)?;
            (vec![client.get_team(req).await.map_err(status_error)?.into_inner()], true)
        }
    };
    show(output, &teams, one, team_json, print_teams);
    Ok(())
}

/// Runs a `projects` command.
pub(crate) async fn projects(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: ProjectsCommand,
) -> anyhow::Result<()> {
    let (projects, one) = match cmd {
        ProjectsCommand::Create { name, team } => {
            let req = authed(v1::CreateProjectRequest { name, team }, token)?;
            (vec![client.create_project(req).await.map_err(status_error)?.into_inner()], true)
        }
        ProjectsCommand::List { team } => {
            let req = authed(v1::ListProjectsRequest { team }, token)?;
            (client.list_projects(req).await.map_err(status_error)?.into_inner().projects, false)
        }
        ProjectsCommand::Get { project } => {
            let req = authed(v1::GetProjectRequest { project }, token)?;
            (vec![client.get_project(req).await.map_err(status_error)?.into_inner()], true)
        }
    };
    show(output, &projects, one, project_json, print_projects);
    Ok(())
}

/// Runs a `principals` command.
pub(crate) async fn principals(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: PrincipalsCommand,
) -> anyhow::Result<()> {
    let principal = match cmd {
        PrincipalsCommand::RevokeKeys { id } => {
            let req = authed(v1::RevokePrincipalKeysRequest { id }, token)?;
            let r = client.revoke_principal_keys(req).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&json!({"id": r.id, "revoked": r.revoked_key_ids})),
                Output::Table if r.revoked_key_ids.is_empty() => {
                    println!("principal {}: no active key to revoke", r.id)
                }
                Output::Table => {
                    println!("principal {}: revoked {} key(s)", r.id, r.revoked_key_ids.len());
                    r.revoked_key_ids.iter().for_each(|k| println!("  {k}"));
                }
            }
            return Ok(());
        }
        PrincipalsCommand::List { project, limit, after } => {
            let req = authed(v1::ListPrincipalsRequest { project, limit, after }, token)?;
            let page = client.list_principals(req).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "data": page.principals.iter().map(principal_json).collect::<Vec<_>>(),
                    "next_after": page.next_after,
                })),
                Output::Table => {
                    print_principals(&page.principals);
                    if let Some(next) = page.next_after {
                        println!("\nmore: --after {next}");
                    }
                }
            }
            return Ok(());
        }
        PrincipalsCommand::Get { id } => {
            client.get_principal(authed(v1::GetPrincipalRequest { id }, token)?).await.map_err(status_error)?
        }
    };
    show(output, &[principal.into_inner()], true, principal_json, print_principals);
    Ok(())
}
