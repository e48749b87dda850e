//! The command line of `tollctl`: global flags, the command tree, the connection, and the
//! output helpers (table or JSON) every resource module shares. Each resource's commands
//! live in its own module.

use crate::apply::ApplyArgs;
use crate::budgets::BudgetsCommand;
use crate::catalog::{AliasesCommand, ModelsCommand, PoliciesCommand};
use crate::keys::KeysCommand;
use crate::providers::ProvidersCommand;
use crate::security::{AuditCommand, TokensCommand};
use crate::tenancy::{OrgsCommand, PrincipalsCommand, ProjectsCommand, TeamsCommand};
use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// Operator CLI for tollgate.
#[derive(Debug, Parser)]
#[command(name = "tollctl", version)]
pub(crate) struct Cli {
    /// Control-plane gRPC endpoint.
    #[arg(long, env = "TOLLGATE_ENDPOINT", default_value = "http://127.0.0.1:4002", global = true)]
    endpoint: String,
    /// Admin token; TOLLGATE_ADMIN_TOKEN (the control plane's bootstrap token) is used
    /// when neither this nor TOLLGATE_TOKEN is set.
    #[arg(long, env = "TOLLGATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, env = "TOLLGATE_OUTPUT", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON in the REST API's shapes, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply a declarative file of providers, models, organizations, teams, projects,
    /// budgets and keys; idempotent (see docs/apply.md).
    Apply(ApplyArgs),
    /// Organizations.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Teams of an organization.
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Projects of a team.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Principals: the customer or user ids keys are minted for.
    #[command(subcommand)]
    Principals(PrincipalsCommand),
    /// Provider credentials (never shown; only a hint and a fingerprint).
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// Virtual keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Budgets at any scope: organization, team, project, principal, virtual key.
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// The model catalog and its prices.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Model aliases: other public names for models (one level deep).
    #[command(subcommand)]
    Aliases(AliasesCommand),
    /// Routing policies: strategy, attempts, timeouts, backoff, retry_on and cooldown per
    /// organization, team, project or key, or the default.
    #[command(subcommand)]
    RoutingPolicies(PoliciesCommand),
    /// Admin tokens: scoped, optionally bound to a team or project.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The audit trail of control-plane writes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Usage from the ledger: totals and groups, as `GET /api/v1/usage`.
    Usage {
        /// organization (org), team, project, principal, key (virtual_key), or tag (the
        /// requests of keys carrying the tag given as --scope-id).
        #[arg(long, requires = "scope_id")]
        scope: Option<String>,
        /// The scope's id (a principal is free-form).
        #[arg(long, requires = "scope")]
        scope_id: Option<String>,
        /// 1h, 24h, 7d, 30d or mtd (month-to-date); default 30d.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        window: Option<String>,
        /// Start (RFC 3339), instead of --window.
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339, exclusive; default now).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Comma list of model (served), requested_model, day, hour, key, principal, tag.
        #[arg(long)]
        group_by: Option<String>,
    },
}

/// A `K=V` argument.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected K=V, got {s:?}"))
}

/// A request carrying the admin token.
pub(crate) fn authed<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}").parse().map_err(|_| anyhow!("the token is not a valid header value"))?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

/// A gRPC failure as the error message the user sees.
pub(crate) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{} ({:?})", s.message(), s.code())
}

/// The admin token: `--token` / `TOLLGATE_TOKEN`, else `TOLLGATE_ADMIN_TOKEN`.
fn token(cli: &Cli) -> anyhow::Result<String> {
    cli.token
        .clone()
        .or_else(|| std::env::var("TOLLGATE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .context("an admin token is required: pass --token or set TOLLGATE_TOKEN (or TOLLGATE_ADMIN_TOKEN)")
}

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = token(&cli)?;
    // A file with errors is refused before any connection is made.
    let apply = match &cli.command {
        Command::Apply(args) => Some(crate::apply::load(args)?),
        _ => None,
    };
    let channel = Channel::from_shared(cli.endpoint.clone())
        .context("invalid --endpoint")?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", cli.endpoint))?;
    let mut client = AdminServiceClient::new(channel.clone());
    let (token, output) = (token.as_str(), cli.output);
    match cli.command {
        Command::Apply(args) => match apply {
            Some(file) => crate::apply::run(&mut client, token, output, &args, file).await,
            None => Err(anyhow!("the apply file was not read")),
        },
        Command::Orgs(cmd) => crate::tenancy::orgs(&mut client, token, output, cmd).await,
        Command::Teams(cmd) => crate::tenancy::teams(&mut client, token, output, cmd).await,
        Command::Projects(cmd) => crate::tenancy::projects(&mut client, token, output, cmd).await,
        Command::Principals(cmd) => crate::tenancy::principals(&mut client, token, output, cmd).await,
        Command::Providers(cmd) => crate::providers::providers(&mut client, token, output, cmd).await,
        Command::Keys(cmd) => crate::keys::keys(&mut client, token, output, cmd).await,
        Command::Budgets(cmd) => crate::budgets::budgets(&mut client, token, output, cmd).await,
        Command::Models(cmd) => crate::catalog::models(&mut client, token, output, cmd).await,
        Command::Aliases(cmd) => crate::catalog::aliases(&mut client, token, output, cmd).await,
        Command::RoutingPolicies(cmd) => crate::catalog::policies(&mut client, token, output, cmd).await,
        Command::Tokens(cmd) => crate::security::tokens(channel, token, output, cmd).await,
        Command::Audit(cmd) => crate::security::audit(channel, token, output, cmd).await,
        Command::Usage { scope, scope_id, window, from, to, group_by } => {
            let params = [("scope", scope), ("scope_id", scope_id), ("window", window), ("from", from), ("to", to)]
                .into_iter()
                .chain([("group_by", group_by)])
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect();
            let resp = client
                .get_usage(authed(v1::GetUsageRequest { params }, token)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let report: serde_json::Value =
                serde_json::from_str(&resp.report_json).context("the control plane sent an unreadable report")?;
            match output {
                Output::Json => print_json(&report),
                Output::Table => print_usage(&report),
            }
            Ok(())
        }
    }
}

/// The summary, then one table per group of a usage report.
fn print_usage(report: &serde_json::Value) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    };
    let sums = |v: &serde_json::Value| {
        [
            text(&v["requests"]),
            text(&v["input_tokens"]),
            text(&v["output_tokens"]),
            format!("${}", text(&v["cost_usd"])),
        ]
    };
    println!("window {} .. {}", text(&report["window"]["from"]), text(&report["window"]["to"]));
    let [r, i, o, c] = sums(&report["summary"]);
    print_table(&["", "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "COST"], &[["total".into(), r, i, o, c]]);
    if let Some(obj) = report.as_object() {
        for (name, rows) in obj.iter().filter(|(k, _)| k.starts_with("by_")) {
            let group = &name[3..];
            let rows: Vec<[String; 5]> = rows
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|row| {
                            let [r, i, o, c] = sums(row);
                            [text(&row[group]), r, i, o, c]
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!();
            let head = group.to_uppercase();
            print_table(&[head.as_str(), "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "COST"], &rows);
        }
    }
}

/// Prints pretty JSON.
pub(crate) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Prints a table: a header line, then one line per row, columns aligned.
pub(crate) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: [usize; N] = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
