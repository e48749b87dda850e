//! Commands of `tollctl` and their output (table or JSON).

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
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Virtual keys.
    #[command(subcommand)]
    Keys(KeysCommand),
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

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected K=V, got {s:?}"))
}

fn authed<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}").parse().map_err(|_| anyhow!("the token is not a valid header value"))?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

fn status_error(s: tonic::Status) -> anyhow::Error {
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
    let mut client = AdminServiceClient::new(channel);
    let Command::Keys(cmd) = cli.command;
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
        KeysCommand::List { project, principal, status, limit, after } => {
            let req = v1::ListKeysRequest { project, principal, status, limit, after };
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

fn key_json(k: &v1::KeyInfo) -> serde_json::Value {
    json!({
        "id": k.id, "name": k.name, "project_id": k.project_id, "principal": k.principal,
        "status": k.status, "key_hint": k.hint, "models_allowed": k.models_allowed,
        "rpm": k.rpm, "tpm": k.tpm, "max_concurrency": k.max_concurrency,
        "metadata": k.metadata, "expires_at": k.expires_at, "created_at": k.created_at,
        "rotated_at": k.rotated_at, "revoked_at": k.revoked_at,
    })
}

fn show_one(output: Output, key: &v1::KeyInfo) {
    match output {
        Output::Json => print_json(&key_json(key)),
        Output::Table => print_keys(std::slice::from_ref(key)),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

fn print_keys(keys: &[v1::KeyInfo]) {
    let header = ["ID", "NAME", "PROJECT", "PRINCIPAL", "STATUS", "HINT", "MODELS", "CREATED"];
    let rows: Vec<[String; 8]> = keys
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
                k.created_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
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
