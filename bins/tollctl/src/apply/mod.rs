//! `tollctl apply -f tollgate.yaml [--dry-run]`: brings the control plane in line with a
//! declarative file of providers, models, organizations, teams, projects, budgets and
//! keys (format in docs/apply.md).
//!
//! The steps, in order: parse and check the file (unknown fields, missing environment
//! variables, bad values: every error names its path), read what the control plane
//! holds, plan every create and update with field-level differences and every reference
//! resolved, and only then write, in dependency order (providers → models →
//! organizations → teams → projects → budgets → keys). Nothing in the file is ever
//! deleted; objects the file does not name are left alone. A second apply of the same
//! file plans nothing and writes nothing. A new key's secret is printed once, to
//! stdout, and kept nowhere else.

mod file;
mod plan;
mod state;

use crate::cli::{Output, authed, print_json, status_error};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use plan::{Action, Change, Ids, Op, Plan, TargetRef};
use serde_json::json;
use std::collections::HashMap;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// `tollctl apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The file to apply (YAML); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A file that passed the checks that need no control plane, with the secrets its
/// `api_key_env` variables hold (kept in memory only).
pub(crate) struct Loaded {
    file: file::File,
    secrets: HashMap<String, String>,
}

/// The value of an environment variable holding a secret; the error names the variable,
/// never a value.
pub(crate) fn env_secret(var: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!("environment variable {var} is not set"),
    }
}

fn invalid(source: &str, errors: &[String]) -> anyhow::Error {
    let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    anyhow!("{source} is invalid; nothing was written:\n{}", list.join("\n"))
}

/// Reads, parses and checks the file; fails naming every bad path.
pub(crate) fn load(args: &ApplyArgs) -> anyhow::Result<Loaded> {
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))?
    };
    let file = file::parse(&text).map_err(|e| invalid(&args.file, &[e]))?;
    let env = |var: &str| std::env::var(var).ok();
    let errors = file::check(&file, &env);
    if !errors.is_empty() {
        return Err(invalid(&args.file, &errors));
    }
    let secrets = file
        .providers
        .iter()
        .filter_map(|p| p.api_key_env.as_ref())
        .filter_map(|var| std::env::var(var).ok().map(|v| (var.clone(), v)))
        .collect();
    Ok(Loaded { file, secrets })
}

/// What became of one change.
enum Outcome {
    Applied(String),
    Failed(String),
    NotApplied,
}

/// A minted key's secret, printed once.
struct Minted {
    name: String,
    id: String,
    secret: String,
}

/// Plans the file against the control plane, prints the plan, and unless `--dry-run`
/// carries it out.
pub(crate) async fn run(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    args: &ApplyArgs,
    loaded: Loaded,
) -> anyhow::Result<()> {
    let state = state::read(client, token, &loaded.file).await?;
    let mut plan = plan::plan(&loaded.file, &loaded.secrets, &state, tollgate_core::Timestamp::now())
        .map_err(|errors| invalid(&args.file, &errors))?;
    if args.dry_run || plan.changes.is_empty() {
        report(output, &plan, None, &[], args.dry_run);
        return Ok(());
    }
    if output == Output::Table {
        print_plan(&plan);
        println!();
    }
    let mut outcomes = Vec::with_capacity(plan.changes.len());
    let mut minted = Vec::new();
    let mut failed = None;
    for change in &plan.changes {
        if failed.is_some() {
            outcomes.push(Outcome::NotApplied);
            continue;
        }
        match execute(client, token, &mut plan.ids, change).await {
            Ok((id, secret)) => {
                if output == Output::Table {
                    println!("{}d {} {} ({id})", change.action.as_str(), change.kind, change.name);
                }
                if let Some(secret) = secret {
                    minted.push(Minted { name: change.name.clone(), id: id.clone(), secret });
                }
                outcomes.push(Outcome::Applied(id));
            }
            Err(e) => {
                let msg = format!("{e:#}");
                failed = Some(format!("{} {} {}: {msg}", change.action.as_str(), change.kind, change.name));
                outcomes.push(Outcome::Failed(msg));
            }
        }
    }
    report(output, &plan, Some(&outcomes), &minted, false);
    match failed {
        Some(f) => {
            let applied = outcomes.iter().filter(|o| matches!(o, Outcome::Applied(_))).count();
            let left = outcomes.len() - applied;
            Err(anyhow!("apply stopped at {f}; {applied} change(s) applied, {left} not applied"))
        }
        None => Ok(()),
    }
}

/// Resolves a name the plan refers to into the id it has by now.
fn id_of(map: &HashMap<String, String>, kind: &str, name: &str) -> anyhow::Result<String> {
    map.get(name).cloned().ok_or_else(|| anyhow!("{kind} {name:?} was not created"))
}

/// Makes one change's call; returns the id of the object and a minted secret.
async fn execute(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    ids: &mut Ids,
    change: &Change,
) -> anyhow::Result<(String, Option<String>)> {
    let id = match &change.op {
        Op::CreateProvider(req) => {
            client.create_provider(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::UpdateProvider(req) => {
            client.update_provider(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::CreateModel(req) => {
            client.create_model(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::UpdateModel(req) => {
            client.update_model(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::CreateOrg(name) => {
            let req = v1::CreateOrganizationRequest { name: name.clone() };
            let org = client.create_organization(authed(req, token)?).await.map_err(status_error)?.into_inner();
            ids.orgs.insert(name.clone(), org.id.clone());
            org.id
        }
        Op::CreateTeam(name, org) => {
            let organization = org.as_ref().map(|o| id_of(&ids.orgs, "organization", o)).transpose()?;
            let req = v1::CreateTeamRequest { name: name.clone(), organization };
            let team = client.create_team(authed(req, token)?).await.map_err(status_error)?.into_inner();
            ids.teams.insert(name.clone(), team.id.clone());
            team.id
        }
        Op::CreateProject(team, name) => {
            let req = v1::CreateProjectRequest { name: name.clone(), team: id_of(&ids.teams, "team", team)? };
            let project = client.create_project(authed(req, token)?).await.map_err(status_error)?.into_inner();
            ids.projects.insert(format!("{team}/{name}"), project.id.clone());
            project.id
        }
        Op::CreateBudget(target, req) => {
            let scope_id = match target {
                TargetRef::Org(o) => id_of(&ids.orgs, "organization", o)?,
                TargetRef::Team(t) => id_of(&ids.teams, "team", t)?,
                TargetRef::Project(p) => id_of(&ids.projects, "project", p)?,
                TargetRef::Principal(p) => p.clone(),
                TargetRef::Key(p, k) => ids
                    .keys
                    .get(&(p.clone(), k.clone()))
                    .cloned()
                    .ok_or_else(|| anyhow!("key {p}/{k} was not created"))?,
            };
            let req = v1::CreateBudgetRequest { scope_id, ..req.clone() };
            client.create_budget(authed(req, token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::UpdateBudget(req) => {
            client.update_budget(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
        Op::CreateKey(project, req) => {
            let req = v1::CreateKeyRequest { project: id_of(&ids.projects, "project", project)?, ..req.clone() };
            let resp = client.create_key(authed(req, token)?).await.map_err(status_error)?.into_inner();
            let key = resp.key.context("the control plane returned no key")?;
            return Ok((key.id, Some(resp.secret)));
        }
        Op::UpdateKey(req) => {
            client.update_key(authed(req.clone(), token)?).await.map_err(status_error)?.into_inner().id
        }
    };
    Ok((id, None))
}

fn print_plan(plan: &Plan) {
    for c in &plan.changes {
        let sign = if c.action == Action::Create { "+" } else { "~" };
        println!("{sign} {} {} {}", c.action.as_str(), c.kind, c.name);
        for d in &c.diffs {
            match (&d.old, &d.new) {
                (None, Some(new)) if c.action == Action::Create => println!("    {}: {new}", d.field),
                (old, new) => println!(
                    "    {}: {} -> {}",
                    d.field,
                    old.as_deref().unwrap_or("(none)"),
                    new.as_deref().unwrap_or("(none)")
                ),
            }
        }
    }
}

fn summary(plan: &Plan) -> (usize, usize) {
    let creates = plan.changes.iter().filter(|c| c.action == Action::Create).count();
    (creates, plan.changes.len() - creates)
}

/// Prints the plan (and what became of it), as a table or one JSON document.
fn report(output: Output, plan: &Plan, outcomes: Option<&[Outcome]>, minted: &[Minted], dry_run: bool) {
    let (creates, updates) = summary(plan);
    match output {
        Output::Json => {
            let changes: Vec<serde_json::Value> = plan
                .changes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut v = json!({
                        "action": c.action.as_str(), "kind": c.kind, "name": c.name,
                        "fields": c.diffs.iter().map(|d| json!({"field": d.field, "old": d.old, "new": d.new})).collect::<Vec<_>>(),
                    });
                    let (status, id, error) = match outcomes.and_then(|o| o.get(i)) {
                        None => ("planned", None, None),
                        Some(Outcome::Applied(id)) => ("applied", Some(id.as_str()), None),
                        Some(Outcome::Failed(e)) => ("failed", None, Some(e.as_str())),
                        Some(Outcome::NotApplied) => ("not_applied", None, None),
                    };
                    v["status"] = json!(status);
                    v["id"] = json!(id);
                    v["error"] = json!(error);
                    v
                })
                .collect();
            print_json(&json!({
                "dry_run": dry_run,
                "summary": {"create": creates, "update": updates, "unchanged": plan.unchanged},
                "changes": changes,
                "keys": minted.iter().map(|m| json!({"name": m.name, "id": m.id, "key": m.secret})).collect::<Vec<_>>(),
            }));
        }
        Output::Table => {
            if plan.changes.is_empty() {
                println!("No changes: {} object(s) in the file match the control plane.", plan.unchanged);
                return;
            }
            if outcomes.is_none() {
                print_plan(plan);
                println!();
            }
            match outcomes {
                None => println!("Plan: {creates} to create, {updates} to update, {} unchanged.", plan.unchanged),
                Some(o) => {
                    let done = |a: Action| {
                        plan.changes
                            .iter()
                            .zip(o)
                            .filter(|(c, o)| c.action == a && matches!(o, Outcome::Applied(_)))
                            .count()
                    };
                    println!(
                        "Applied: {} created, {} updated, {} unchanged (of {creates} to create, {updates} to update).",
                        done(Action::Create),
                        done(Action::Update),
                        plan.unchanged
                    );
                }
            }
            if dry_run {
                println!("Dry run: nothing was written.");
            }
            if let Some(outcomes) = outcomes {
                let failed = outcomes.iter().any(|o| matches!(o, Outcome::Failed(_)));
                if failed {
                    println!("\nNot applied:");
                    for (c, o) in plan.changes.iter().zip(outcomes) {
                        match o {
                            Outcome::Failed(e) => {
                                println!("  {} {} {}: FAILED: {e}", c.action.as_str(), c.kind, c.name)
                            }
                            Outcome::NotApplied => println!("  {} {} {}", c.action.as_str(), c.kind, c.name),
                            Outcome::Applied(_) => {}
                        }
                    }
                }
            }
            if !minted.is_empty() {
                println!("\nNew key secrets, shown once (they cannot be read again; store them now):");
                for m in minted {
                    println!("  {}  {}  {}", m.name, m.id, m.secret);
                }
            }
        }
    }
}
