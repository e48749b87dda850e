//! `tollctl tokens ...` and `tollctl audit ...`: admin tokens and the audit trail, over
//! the control plane's `SecurityService`.

use crate::cli::{Output, authed, print_json, print_table, status_error};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::security_service_client::SecurityServiceClient;
use tonic::transport::Channel;

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Mint an admin token; prints it once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// A scope (keys:read, keys:write, budgets:read, budgets:write, providers:write,
        /// models:write, usage:read, audit:read, tokens:write, gateway, admin); repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Bind the token to this team (id or name).
        #[arg(long)]
        team: Option<String>,
        /// Bind the token to this project (id or name).
        #[arg(long)]
        project: Option<String>,
        /// Expiry (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: its next call is refused.
    Revoke {
        /// Token id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Audit events, newest first.
    List {
        /// Only events about this kind of target (key, budget, token, ...).
        #[arg(long)]
        target_kind: Option<String>,
        /// Only events by this actor (a token id, or bootstrap).
        #[arg(long)]
        actor: Option<String>,
        /// Only events at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this instant (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Re-walk the stored hash chain; exits 1 naming the first broken row.
    Verify,
}

fn token_json(t: &v1::TokenInfo) -> serde_json::Value {
    json!({
        "id": t.id, "name": t.name, "scopes": t.scopes, "team_id": t.team_id, "project_id": t.project_id,
        "status": t.status, "token_hint": t.hint, "expires_at": t.expires_at, "created_at": t.created_at,
        "revoked_at": t.revoked_at,
    })
}

fn print_tokens(tokens: &[v1::TokenInfo]) {
    let header = ["ID", "NAME", "SCOPES", "TEAM", "PROJECT", "STATUS", "HINT", "EXPIRES", "CREATED"];
    let rows: Vec<[String; 9]> = tokens
        .iter()
        .map(|t| {
            [
                t.id.clone(),
                t.name.clone(),
                t.scopes.join(","),
                t.team_id.clone().unwrap_or_default(),
                t.project_id.clone().unwrap_or_default(),
                t.status.clone(),
                t.hint.clone(),
                t.expires_at.clone().unwrap_or_default(),
                t.created_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

/// Runs a `tokens` command.
pub(crate) async fn tokens(channel: Channel, token: &str, output: Output, cmd: TokensCommand) -> anyhow::Result<()> {
    let mut client = SecurityServiceClient::new(channel);
    match cmd {
        TokensCommand::Create { name, scopes, team, project, expires_at } => {
            let req = v1::CreateTokenRequest { name, scopes, team, project, expires_at };
            let resp = client.create_token(authed(req, token)?).await.map_err(status_error)?.into_inner();
            let info = resp.token.context("server returned no token")?;
            match output {
                Output::Json => print_json(&json!({"token": resp.secret, "id": info.id, "info": token_json(&info)})),
                Output::Table => {
                    print_tokens(&[info]);
                    println!("\ntoken (shown once): {}", resp.secret);
                }
            }
        }
        TokensCommand::List => {
            let resp = client.list_tokens(authed(v1::ListTokensRequest {}, token)?).await.map_err(status_error)?;
            let tokens = resp.into_inner().tokens;
            match output {
                Output::Json => print_json(&json!({"data": tokens.iter().map(token_json).collect::<Vec<_>>()})),
                Output::Table => print_tokens(&tokens),
            }
        }
        TokensCommand::Revoke { id } => {
            let req = v1::RevokeTokenRequest { id };
            let info = client.revoke_token(authed(req, token)?).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&token_json(&info)),
                Output::Table => print_tokens(&[info]),
            }
        }
    }
    Ok(())
}

/// Runs an `audit` command.
pub(crate) async fn audit(channel: Channel, token: &str, output: Output, cmd: AuditCommand) -> anyhow::Result<()> {
    let mut client = SecurityServiceClient::new(channel);
    match cmd {
        AuditCommand::List { target_kind, actor, since, until, limit, cursor } => {
            let req = v1::ListAuditRequest { target_kind, actor, since, until, limit, cursor };
            let resp = client.list_audit(authed(req, token)?).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => {
                    let events: Vec<serde_json::Value> = resp
                        .events
                        .iter()
                        .map(|e| {
                            let metadata: serde_json::Value =
                                serde_json::from_str(&e.metadata_json).unwrap_or(serde_json::Value::Null);
                            json!({"seq": e.seq, "id": e.id, "at": e.at, "actor": e.actor, "action": e.action,
                                   "target_kind": e.target_kind, "target_id": e.target_id, "metadata": metadata,
                                   "hash": e.hash})
                        })
                        .collect();
                    print_json(&json!({"data": events, "next_cursor": resp.next_cursor}));
                }
                Output::Table => {
                    let header = ["SEQ", "AT", "ACTOR", "ACTION", "TARGET"];
                    let rows: Vec<[String; 5]> = resp
                        .events
                        .iter()
                        .map(|e| {
                            let target = format!("{} {}", e.target_kind, e.target_id);
                            [e.seq.to_string(), e.at.clone(), e.actor.clone(), e.action.clone(), target]
                        })
                        .collect();
                    print_table(&header, &rows);
                    if let Some(next) = resp.next_cursor {
                        println!("\nmore: --cursor {next}");
                    }
                }
            }
        }
        AuditCommand::Verify => {
            let v = client.verify_audit(authed(v1::VerifyAuditRequest {}, token)?).await.map_err(status_error)?;
            let v = v.into_inner();
            let broken = v.first_broken.as_ref().map(|b| json!({"id": b.id, "seq": b.seq, "reason": b.reason}));
            match output {
                Output::Json => print_json(&json!({"ok": v.ok, "checked": v.checked, "first_broken": broken})),
                Output::Table if v.ok => println!("audit chain intact: {} events verified", v.checked),
                Output::Table => println!("audit chain BROKEN after {} intact events", v.checked),
            }
            if let Some(b) = v.first_broken {
                bail!("audit chain broken at seq {} (event {}): {}", b.seq, b.id, b.reason);
            }
        }
    }
    Ok(())
}
