//! Commands of `tollctl` (`keys ...`, `budgets ...`, `models ...`, `aliases ...`,
//! `routing-policies ...`, `usage`, `tokens ...`, `audit ...`) and their output (table or
//! JSON).

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
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
    /// Admin token.
    #[arg(long, env = "TOLLGATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, env = "TOLLGATE_OUTPUT", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Tokens(crate::security::TokensCommand),
    /// The audit trail of control-plane writes.
    #[command(subcommand)]
    Audit(crate::security::AuditCommand),
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

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List models with their prices (USD per 1M tokens) and where the prices came from.
    List,
    /// Override a model's prices (USD per 1M tokens; zero is a price).
    SetPrice {
        /// Model id or public name.
        model: String,
        /// Per 1M prompt tokens.
        #[arg(long = "input-per-mtok", allow_hyphen_values = true)]
        input_price: String,
        /// Per 1M generated tokens.
        #[arg(long = "output-per-mtok", allow_hyphen_values = true)]
        output_price: String,
        /// Per 1M cached prompt tokens (default: the input price).
        #[arg(long = "cached-input-per-mtok", allow_hyphen_values = true)]
        cached_input_price: Option<String>,
        /// Per 1M prompt tokens written to the cache (default: the input price).
        #[arg(long = "cache-write-per-mtok", allow_hyphen_values = true)]
        cache_write_price: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AliasesCommand {
    /// Make NAME another name for a model.
    Create {
        /// The alias.
        name: String,
        /// The model's public name (or id); never another alias.
        #[arg(long)]
        model: String,
    },
    /// List aliases.
    List,
    /// Delete an alias.
    Delete {
        /// The alias.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PoliciesCommand {
    /// Attach a routing policy to a scope (one per scope).
    Create {
        /// organization, team, project, virtual_key or default.
        #[arg(long)]
        scope: String,
        /// The target: an id, or for organization / team / project a name; none for default.
        #[arg(long)]
        scope_id: Option<String>,
        /// The policy as JSON, e.g. '{"strategy":"weighted","max_attempts":3}'; fields left
        /// out take the defaults.
        #[arg(long, default_value = "{}")]
        policy: String,
    },
    /// List routing policies.
    List,
    /// Show one routing policy, every field written out.
    Get {
        /// Policy id.
        id: String,
    },
    /// Delete a routing policy; its scope falls back to the next level.
    Delete {
        /// Policy id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a key; prints the secret once.
    Create {
        /// Project id or name.
        #[arg(long)]
        project: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Principal (customer or user id).
        #[arg(long)]
        principal: Option<String>,
        /// Allowed model or glob; repeat for several.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Concurrent requests.
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// Metadata as K=V; repeat for several.
        #[arg(long = "metadata", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
        /// A tag copied to the key's ledger entries (e.g. env:prod); repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Expiry (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// Budget limit in USD (e.g. 50.00).
        #[arg(long, allow_hyphen_values = true)]
        budget_usd: Option<String>,
        /// Budget window: minute, hour, day, week, month, total.
        #[arg(long, default_value = "month")]
        budget_window: String,
    },
    /// List keys.
    List {
        /// Project id or name.
        #[arg(long)]
        project: Option<String>,
        /// Principal.
        #[arg(long)]
        principal: Option<String>,
        /// active or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Only keys carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one key.
    Get {
        /// Key id.
        id: String,
    },
    /// Issue a new secret; the old one works for the grace period.
    Rotate {
        /// Key id.
        id: String,
        /// Seconds the old secret keeps working.
        #[arg(long, default_value_t = 0)]
        grace_period_s: u64,
    },
    /// Revoke a key on every gateway.
    Revoke {
        /// Key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum BudgetsCommand {
    /// Create a budget; exactly one of --limit-usd and --limit-tokens.
    Create {
        /// organization, team, project, principal or virtual_key.
        #[arg(long)]
        scope: String,
        /// The target: an id, or for organization / team / project a name.
        #[arg(long)]
        scope_id: String,
        /// Money limit in USD (e.g. 500.00).
        #[arg(long, allow_hyphen_values = true, conflicts_with = "limit_tokens")]
        limit_usd: Option<String>,
        /// Token limit (input + output).
        #[arg(long)]
        limit_tokens: Option<u64>,
        /// minute, hour, day, week, month or total.
        #[arg(long)]
        window: String,
        /// block (default) or warn.
        #[arg(long)]
        on_breach: Option<String>,
        /// Alert at this fraction of the limit (e.g. 0.8); repeat for several.
        #[arg(long = "alert-threshold")]
        alert_thresholds: Vec<String>,
    },
    /// List budgets.
    List {
        /// Only this scope kind.
        #[arg(long)]
        scope: Option<String>,
        /// Only this scope target (id, or name for organization / team / project).
        #[arg(long)]
        scope_id: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one budget.
    Get {
        /// Budget id.
        id: String,
    },
    /// Change a budget; options left out stay as they are.
    Update {
        /// Budget id.
        id: String,
        /// New money limit in USD (makes it a money budget).
        #[arg(long, allow_hyphen_values = true, conflicts_with = "limit_tokens")]
        limit_usd: Option<String>,
        /// New token limit (makes it a token budget).
        #[arg(long)]
        limit_tokens: Option<u64>,
        /// New window.
        #[arg(long)]
        window: Option<String>,
        /// New breach behaviour: block or warn.
        #[arg(long)]
        on_breach: Option<String>,
        /// Replace the alert thresholds (e.g. 0.8); repeat for several.
        #[arg(long = "alert-threshold", conflicts_with = "clear_alert_thresholds")]
        alert_thresholds: Vec<String>,
        /// Remove every alert threshold.
        #[arg(long)]
        clear_alert_thresholds: bool,
        /// End the temporary increase now.
        #[arg(long)]
        clear_increase: bool,
    },
    /// Delete a budget.
    Delete {
        /// Budget id.
        id: String,
    },
    /// Start the budget's window afresh on every gateway.
    Reset {
        /// Budget id.
        id: String,
    },
    /// Raise the limit for a while; replaces an increase in force.
    Increase {
        /// Budget id.
        id: String,
        /// Increase of a money budget, in USD.
        #[arg(long, allow_hyphen_values = true, conflicts_with = "tokens", required_unless_present = "tokens")]
        amount_usd: Option<String>,
        /// Increase of a token budget.
        #[arg(long)]
        tokens: Option<u64>,
        /// When the increase ends (RFC 3339).
        #[arg(long, conflicts_with = "duration_s", required_unless_present = "duration_s")]
        expires_at: Option<String>,
        /// How long the increase lasts, in seconds from now.
        #[arg(long)]
        duration_s: Option<u64>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected K=V, got {s:?}"))
}

pub(crate) fn authed<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}").parse().map_err(|_| anyhow!("the token is not a valid header value"))?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

pub(crate) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{} ({:?})", s.message(), s.code())
}

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = cli.token.clone().context("an admin token is required: pass --token or set TOLLGATE_TOKEN")?;
    let channel = Channel::from_shared(cli.endpoint.clone())
        .context("invalid --endpoint")?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", cli.endpoint))?;
    let mut client = AdminServiceClient::new(channel.clone());
    let cmd = match cli.command {
        Command::Keys(cmd) => cmd,
        Command::Tokens(cmd) => return crate::security::tokens(channel, &token, cli.output, cmd).await,
        Command::Audit(cmd) => return crate::security::audit(channel, &token, cli.output, cmd).await,
        Command::Budgets(cmd) => return budgets(&mut client, &token, cli.output, cmd).await,
        Command::Models(cmd) => return models(&mut client, &token, cli.output, cmd).await,
        Command::Aliases(cmd) => return aliases(&mut client, &token, cli.output, cmd).await,
        Command::RoutingPolicies(cmd) => return policies(&mut client, &token, cli.output, cmd).await,
        Command::Usage { scope, scope_id, window, from, to, group_by } => {
            let params = [("scope", scope), ("scope_id", scope_id), ("window", window), ("from", from), ("to", to)]
                .into_iter()
                .chain([("group_by", group_by)])
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect();
            let resp = client
                .get_usage(authed(v1::GetUsageRequest { params }, &token)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let report: serde_json::Value =
                serde_json::from_str(&resp.report_json).context("the control plane sent an unreadable report")?;
            match cli.output {
                Output::Json => print_json(&report),
                Output::Table => print_usage(&report),
            }
            return Ok(());
        }
    };
    match cmd {
        KeysCommand::Create {
            project,
            name,
            principal,
            models,
            rpm,
            tpm,
            max_concurrency,
            metadata,
            tags,
            expires_at,
            budget_usd,
            budget_window,
        } => {
            let req = v1::CreateKeyRequest {
                project,
                name,
                principal,
                models_allowed: models,
                rpm,
                tpm,
                max_concurrency,
                metadata: metadata.into_iter().collect(),
                tags,
                expires_at,
                budget: budget_usd.map(|limit_usd| v1::BudgetSpec {
                    limit_usd,
                    window: budget_window,
                    on_breach: "block".into(),
                }),
            };
            let resp = client.create_key(authed(req, &token)?).await.map_err(status_error)?.into_inner();
            let key = resp.key.context("server returned no key")?;
            match cli.output {
                Output::Json => print_json(&json!({"key": resp.secret, "id": key.id, "info": key_json(&key)})),
                Output::Table => {
                    print_keys(&[key]);
                    println!("\nsecret (shown once): {}", resp.secret);
                }
            }
        }
        KeysCommand::List { project, principal, status, tag, limit, after } => {
            let req = v1::ListKeysRequest { project, principal, status, limit, after, tag };
            let resp = client.list_keys(authed(req, &token)?).await.map_err(status_error)?.into_inner();
            match cli.output {
                Output::Json => print_json(&json!({
                    "data": resp.keys.iter().map(key_json).collect::<Vec<_>>(),
                    "next_after": resp.next_after,
                })),
                Output::Table => {
                    print_keys(&resp.keys);
                    if let Some(next) = resp.next_after {
                        println!("\nmore: --after {next}");
                    }
                }
            }
        }
        KeysCommand::Get { id } => {
            let key =
                client.get_key(authed(v1::GetKeyRequest { id }, &token)?).await.map_err(status_error)?.into_inner();
            show_one(cli.output, &key);
        }
        KeysCommand::Rotate { id, grace_period_s } => {
            let req = v1::RotateKeyRequest { id, grace_period_s };
            let resp = client.rotate_key(authed(req, &token)?).await.map_err(status_error)?.into_inner();
            let key = resp.key.context("server returned no key")?;
            match cli.output {
                Output::Json => print_json(&json!({"key": resp.secret, "id": key.id, "info": key_json(&key)})),
                Output::Table => {
                    print_keys(&[key]);
                    println!("\nnew secret (shown once): {}", resp.secret);
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let key = client
                .revoke_key(authed(v1::RevokeKeyRequest { id }, &token)?)
                .await
                .map_err(status_error)?
                .into_inner();
            show_one(cli.output, &key);
        }
    }
    Ok(())
}

async fn budgets(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: BudgetsCommand,
) -> anyhow::Result<()> {
    let budget = match cmd {
        BudgetsCommand::Create { scope, scope_id, limit_usd, limit_tokens, window, on_breach, alert_thresholds } => {
            let req = v1::CreateBudgetRequest {
                scope,
                scope_id,
                limit_usd,
                limit_tokens,
                window,
                on_breach,
                alert_thresholds,
            };
            client.create_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::List { scope, scope_id, limit, after } => {
            let req = v1::ListBudgetsRequest { scope, scope_id, limit, after };
            let resp = client.list_budgets(authed(req, token)?).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "data": resp.budgets.iter().map(budget_json).collect::<Vec<_>>(),
                    "next_after": resp.next_after,
                })),
                Output::Table => {
                    print_budgets(&resp.budgets);
                    if let Some(next) = resp.next_after {
                        println!("\nmore: --after {next}");
                    }
                }
            }
            return Ok(());
        }
        BudgetsCommand::Get { id } => {
            client.get_budget(authed(v1::GetBudgetRequest { id }, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Update {
            id,
            limit_usd,
            limit_tokens,
            window,
            on_breach,
            alert_thresholds,
            clear_alert_thresholds,
            clear_increase,
        } => {
            let thresholds = (clear_alert_thresholds || !alert_thresholds.is_empty())
                .then_some(v1::AlertThresholds { values: alert_thresholds });
            let req = v1::UpdateBudgetRequest {
                id,
                limit_usd,
                limit_tokens,
                window,
                on_breach,
                alert_thresholds: thresholds,
                clear_temporary_increase: clear_increase,
            };
            client.update_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Delete { id } => {
            let req = v1::DeleteBudgetRequest { id: id.clone() };
            client.delete_budget(authed(req, token)?).await.map_err(status_error)?;
            match output {
                Output::Json => print_json(&json!({"id": id, "deleted": true})),
                Output::Table => println!("deleted budget {id}"),
            }
            return Ok(());
        }
        BudgetsCommand::Reset { id } => {
            client.reset_budget(authed(v1::ResetBudgetRequest { id }, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Increase { id, amount_usd, tokens, expires_at, duration_s } => {
            let req = v1::IncreaseBudgetRequest { id, amount_usd, tokens, expires_at, duration_s };
            client.increase_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
    };
    match output {
        Output::Json => print_json(&budget_json(&budget)),
        Output::Table => print_budgets(std::slice::from_ref(&budget)),
    }
    Ok(())
}

/// Per-mille as the fraction the REST API shows (`800` → `"0.8"`).
fn fraction(permille: u32) -> String {
    let frac = format!("{:03}", permille % 1000);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", permille / 1000, if frac.is_empty() { "0" } else { frac })
}

/// A budget in the same JSON shape as the REST API's budget view.
fn budget_json(b: &v1::BudgetInfo) -> serde_json::Value {
    let increase = match (b.temporary_increase.as_str(), &b.temporary_increase_until) {
        ("", _) | (_, None) => serde_json::Value::Null,
        (amount, Some(until)) => {
            let amount = match (b.limit_tokens, amount.parse::<u64>()) {
                (Some(_), Ok(tokens)) => json!(tokens),
                _ => json!(amount),
            };
            json!({"amount": amount, "until": until})
        }
    };
    json!({
        "id": b.id, "scope": b.scope, "scope_id": b.scope_id,
        "limit_usd": if b.limit_usd.is_empty() { None } else { Some(&b.limit_usd) },
        "limit_tokens": b.limit_tokens, "window": b.window, "on_breach": b.on_breach,
        "alert_thresholds": b.alert_thresholds_permille.iter().map(|&p| fraction(p)).collect::<Vec<_>>(),
        "epoch": b.epoch, "temporary_increase": increase,
        "created_at": b.created_at, "updated_at": b.updated_at,
    })
}

fn print_budgets(budgets: &[v1::BudgetInfo]) {
    let header = ["ID", "SCOPE", "SCOPE_ID", "LIMIT", "WINDOW", "ON_BREACH", "ALERTS", "EPOCH", "INCREASE", "UPDATED"];
    let rows: Vec<[String; 10]> = budgets
        .iter()
        .map(|b| {
            let (limit, increase) = match b.limit_tokens {
                Some(t) => (format!("{t} tokens"), format!("+{} tokens", b.temporary_increase)),
                None => (format!("${}", b.limit_usd), format!("+${}", b.temporary_increase)),
            };
            let increase = match &b.temporary_increase_until {
                Some(until) if !b.temporary_increase.is_empty() => format!("{increase} until {until}"),
                _ => String::new(),
            };
            [
                b.id.clone(),
                b.scope.clone(),
                b.scope_id.clone(),
                limit,
                b.window.clone(),
                b.on_breach.clone(),
                b.alert_thresholds_permille.iter().map(|&p| fraction(p)).collect::<Vec<_>>().join(","),
                b.epoch.to_string(),
                increase,
                b.updated_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

fn key_json(k: &v1::KeyInfo) -> serde_json::Value {
    json!({
        "id": k.id, "name": k.name, "project_id": k.project_id, "principal": k.principal,
        "status": k.status, "key_hint": k.hint, "models_allowed": k.models_allowed,
        "rpm": k.rpm, "tpm": k.tpm, "max_concurrency": k.max_concurrency,
        "metadata": k.metadata, "tags": k.tags, "expires_at": k.expires_at, "created_at": k.created_at,
        "rotated_at": k.rotated_at, "revoked_at": k.revoked_at,
    })
}

fn show_one(output: Output, key: &v1::KeyInfo) {
    match output {
        Output::Json => print_json(&key_json(key)),
        Output::Table => print_keys(std::slice::from_ref(key)),
    }
}

async fn models(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: ModelsCommand,
) -> anyhow::Result<()> {
    let models = match cmd {
        ModelsCommand::List => {
            let req = authed(v1::ListModelsRequest {}, token)?;
            client.list_models(req).await.map_err(status_error)?.into_inner().models
        }
        ModelsCommand::SetPrice { model, input_price, output_price, cached_input_price, cache_write_price } => {
            let req = v1::SetModelPriceRequest {
                model,
                input_per_mtok: input_price,
                output_per_mtok: output_price,
                cached_input_per_mtok: cached_input_price,
                cache_write_per_mtok: cache_write_price,
            };
            vec![client.set_model_price(authed(req, token)?).await.map_err(status_error)?.into_inner()]
        }
    };
    match output {
        Output::Json => print_json(&json!(models.iter().map(model_json).collect::<Vec<_>>())),
        Output::Table => print_models(&models),
    }
    Ok(())
}

fn model_json(m: &v1::ModelInfo) -> serde_json::Value {
    let pricing = m.input_per_mtok.as_ref().map(|input| {
        json!({"input_per_mtok": input, "output_per_mtok": m.output_per_mtok,
               "cached_input_per_mtok": m.cached_input_per_mtok, "cache_write_per_mtok": m.cache_write_per_mtok})
    });
    json!({
        "id": m.id, "name": m.name,
        "deployments": m.deployments.iter().map(|d| json!({
            "provider": d.provider, "model": d.model, "priority": d.priority, "weight": d.weight.unwrap_or(1),
        })).collect::<Vec<_>>(),
        "pricing": pricing, "price_source": m.price_source, "max_output_tokens": m.max_output_tokens,
    })
}

fn print_models(models: &[v1::ModelInfo]) {
    let header = ["NAME", "DEPLOYMENTS", "INPUT", "OUTPUT", "CACHED_INPUT", "CACHE_WRITE", "SOURCE"];
    let usd = |v: &Option<String>| v.as_ref().map(|p| format!("${p}")).unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 7]> = models
        .iter()
        .map(|m| {
            let input = m.input_per_mtok.as_ref();
            [
                m.name.clone(),
                m.deployments.iter().map(|d| format!("{}/{}", d.provider, d.model)).collect::<Vec<_>>().join(","),
                input.map(|p| format!("${p}")).unwrap_or_else(|| "unpriced".into()),
                usd(&m.output_per_mtok),
                if input.is_some() && m.cached_input_per_mtok.is_none() {
                    "=input".into()
                } else {
                    usd(&m.cached_input_per_mtok)
                },
                if input.is_some() && m.cache_write_per_mtok.is_none() {
                    "=input".into()
                } else {
                    usd(&m.cache_write_per_mtok)
                },
                m.price_source.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

async fn aliases(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: AliasesCommand,
) -> anyhow::Result<()> {
    let aliases = match cmd {
        AliasesCommand::Create { name, model } => {
            let req = v1::CreateAliasRequest { name, model };
            vec![client.create_alias(authed(req, token)?).await.map_err(status_error)?.into_inner()]
        }
        AliasesCommand::List => {
            let req = authed(v1::ListAliasesRequest {}, token)?;
            client.list_aliases(req).await.map_err(status_error)?.into_inner().aliases
        }
        AliasesCommand::Delete { name } => {
            let req = v1::DeleteAliasRequest { name: name.clone() };
            client.delete_alias(authed(req, token)?).await.map_err(status_error)?;
            match output {
                Output::Json => print_json(&json!({"name": name, "deleted": true})),
                Output::Table => println!("deleted alias {name}"),
            }
            return Ok(());
        }
    };
    match output {
        Output::Json => print_json(&json!({"data": aliases.iter().map(alias_json).collect::<Vec<_>>()})),
        Output::Table => {
            let rows: Vec<[String; 3]> =
                aliases.iter().map(|a| [a.name.clone(), a.model.clone(), a.created_at.clone()]).collect();
            print_table(&["NAME", "MODEL", "CREATED"], &rows);
        }
    }
    Ok(())
}

/// An alias in the same JSON shape as the REST API's.
fn alias_json(a: &v1::AliasInfo) -> serde_json::Value {
    json!({"name": a.name, "model": a.model, "created_at": a.created_at})
}

async fn policies(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: PoliciesCommand,
) -> anyhow::Result<()> {
    let policies = match cmd {
        PoliciesCommand::Create { scope, scope_id, policy } => {
            let req = v1::CreateRoutingPolicyRequest { scope, scope_id, policy_json: policy };
            vec![client.create_routing_policy(authed(req, token)?).await.map_err(status_error)?.into_inner()]
        }
        PoliciesCommand::List => {
            let req = authed(v1::ListRoutingPoliciesRequest {}, token)?;
            client.list_routing_policies(req).await.map_err(status_error)?.into_inner().policies
        }
        PoliciesCommand::Get { id } => {
            let req = authed(v1::GetRoutingPolicyRequest { id }, token)?;
            vec![client.get_routing_policy(req).await.map_err(status_error)?.into_inner()]
        }
        PoliciesCommand::Delete { id } => {
            let req = v1::DeleteRoutingPolicyRequest { id: id.clone() };
            client.delete_routing_policy(authed(req, token)?).await.map_err(status_error)?;
            match output {
                Output::Json => print_json(&json!({"id": id, "deleted": true})),
                Output::Table => println!("deleted routing policy {id}"),
            }
            return Ok(());
        }
    };
    match output {
        Output::Json => print_json(&json!({"data": policies.iter().map(policy_json).collect::<Vec<_>>()})),
        Output::Table => print_policies(&policies),
    }
    Ok(())
}

/// A routing policy in the same JSON shape as the REST API's (the policy as an object).
fn policy_json(p: &v1::RoutingPolicyInfo) -> serde_json::Value {
    let policy: serde_json::Value =
        serde_json::from_str(&p.policy_json).unwrap_or_else(|_| serde_json::Value::String(p.policy_json.clone()));
    json!({
        "id": p.id, "scope": p.scope, "scope_id": p.scope_id, "policy": policy,
        "created_at": p.created_at, "updated_at": p.updated_at,
    })
}

fn print_policies(policies: &[v1::RoutingPolicyInfo]) {
    let header = ["ID", "SCOPE", "SCOPE_ID", "STRATEGY", "ATTEMPTS", "ATTEMPT_MS", "OVERALL_MS", "RETRY_ON", "UPDATED"];
    let rows: Vec<[String; 9]> = policies
        .iter()
        .map(|p| {
            let v = &policy_json(p)["policy"];
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            let retry_on =
                v["retry_on"].as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(",")).unwrap_or_default();
            [
                p.id.clone(),
                p.scope.clone(),
                p.scope_id.clone().unwrap_or_else(|| "-".into()),
                text(&v["strategy"]),
                text(&v["max_attempts"]),
                text(&v["per_attempt_timeout_ms"]),
                text(&v["overall_timeout_ms"]),
                retry_on,
                p.updated_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
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

pub(crate) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

fn print_keys(keys: &[v1::KeyInfo]) {
    let header = ["ID", "NAME", "PROJECT", "PRINCIPAL", "STATUS", "HINT", "MODELS", "TAGS", "CREATED"];
    let rows: Vec<[String; 9]> = keys
        .iter()
        .map(|k| {
            [
                k.id.clone(),
                k.name.clone().unwrap_or_default(),
                k.project_id.clone(),
                k.principal.clone().unwrap_or_default(),
                k.status.clone(),
                k.hint.clone(),
                if k.models_allowed.is_empty() { "*".into() } else { k.models_allowed.join(",") },
                k.tags.join(","),
                k.created_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_print_as_the_fractions_the_api_takes() {
        assert_eq!(fraction(800), "0.8");
        assert_eq!(fraction(1000), "1.0");
        assert_eq!(fraction(125), "0.125");
        assert_eq!(fraction(50), "0.05");
    }

    #[test]
    fn budget_json_matches_the_rest_view() {
        let b = v1::BudgetInfo {
            id: "bud_1".into(),
            scope: "team".into(),
            scope_id: "team_1".into(),
            limit_usd: String::new(),
            limit_tokens: Some(1000),
            window: "day".into(),
            on_breach: "warn".into(),
            alert_thresholds_permille: vec![500, 800],
            epoch: 3,
            temporary_increase: "250".into(),
            temporary_increase_until: Some("2030-01-01T00:00:00Z".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-02T00:00:00Z".into(),
        };
        let v = budget_json(&b);
        assert_eq!(v["limit_usd"], serde_json::Value::Null);
        assert_eq!(v["limit_tokens"], 1000);
        assert_eq!(v["alert_thresholds"], json!(["0.5", "0.8"]));
        assert_eq!(v["temporary_increase"], json!({"amount": 250, "until": "2030-01-01T00:00:00Z"}));
        let none = budget_json(&v1::BudgetInfo { temporary_increase: String::new(), ..b });
        assert_eq!(none["temporary_increase"], serde_json::Value::Null);
    }
}
