//! `tollctl keys ...`: mint, list, read, update, rotate and revoke virtual keys.

use crate::cli::{Output, authed, parse_kv, print_json, print_table, status_error};
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// `tollctl keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
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
        /// Only keys whose metadata holds K=V; repeat for several (all must match).
        #[arg(long = "metadata", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
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
    /// Change a key's policy; options left out stay as they are, --clear-* clears.
    Update {
        /// Key id.
        id: String,
        /// New display name.
        #[arg(long, conflicts_with = "clear_name")]
        name: Option<String>,
        /// Remove the display name.
        #[arg(long)]
        clear_name: bool,
        /// Allowed model or glob, replacing the list; repeat for several.
        #[arg(long = "model", conflicts_with = "allow_all_models")]
        models: Vec<String>,
        /// Allow every model (empty allowlist).
        #[arg(long)]
        allow_all_models: bool,
        /// Requests per minute.
        #[arg(long, conflicts_with = "clear_rpm")]
        rpm: Option<u32>,
        /// Remove the requests-per-minute cap.
        #[arg(long)]
        clear_rpm: bool,
        /// Tokens per minute.
        #[arg(long, conflicts_with = "clear_tpm")]
        tpm: Option<u64>,
        /// Remove the tokens-per-minute cap.
        #[arg(long)]
        clear_tpm: bool,
        /// Concurrent requests.
        #[arg(long, conflicts_with = "clear_max_concurrency")]
        max_concurrency: Option<u32>,
        /// Remove the concurrency cap.
        #[arg(long)]
        clear_max_concurrency: bool,
        /// Metadata as K=V, replacing the map; repeat for several.
        #[arg(long = "metadata", value_parser = parse_kv, conflicts_with = "clear_metadata")]
        metadata: Vec<(String, String)>,
        /// Remove every metadata entry.
        #[arg(long)]
        clear_metadata: bool,
        /// Tag, replacing the list; repeat for several.
        #[arg(long = "tag", conflicts_with = "clear_tags")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long)]
        clear_tags: bool,
        /// Expiry (RFC 3339).
        #[arg(long, conflicts_with = "clear_expires_at")]
        expires_at: Option<String>,
        /// Remove the expiry.
        #[arg(long)]
        clear_expires_at: bool,
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

/// Runs a `keys` command.
pub(crate) async fn keys(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: KeysCommand,
) -> anyhow::Result<()> {
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
                    ..Default::default()
                }),
            };
            let resp = client.create_key(authed(req, token)?).await.map_err(status_error)?.into_inner();
            let key = resp.key.context("server returned no key")?;
            match output {
                Output::Json => print_json(&json!({"key": resp.secret, "id": key.id, "info": key_json(&key)})),
                Output::Table => {
                    print_keys(&[key]);
                    println!("\nsecret (shown once): {}", resp.secret);
                }
            }
        }
        KeysCommand::List { project, principal, status, tag, metadata, limit, after } => {
            let metadata = metadata.into_iter().collect();
            let req = v1::ListKeysRequest { project, principal, status, limit, after, tag, metadata };
            let resp = client.list_keys(authed(req, token)?).await.map_err(status_error)?.into_inner();
            match output {
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
                client.get_key(authed(v1::GetKeyRequest { id }, token)?).await.map_err(status_error)?.into_inner();
            show_one(output, &key);
        }
        KeysCommand::Update {
            id,
            name,
            clear_name,
            models,
            allow_all_models,
            rpm,
            clear_rpm,
            tpm,
            clear_tpm,
            max_concurrency,
            clear_max_concurrency,
            metadata,
            clear_metadata,
            tags,
            clear_tags,
            expires_at,
            clear_expires_at,
        } => {
            let list =
                |values: Vec<String>, clear: bool| (clear || !values.is_empty()).then_some(v1::StringList { values });
            let req = v1::UpdateKeyRequest {
                id,
                name,
                clear_name,
                models_allowed: list(models, allow_all_models),
                rpm,
                clear_rpm,
                tpm,
                clear_tpm,
                max_concurrency,
                clear_max_concurrency,
                metadata: (clear_metadata || !metadata.is_empty())
                    .then(|| v1::StringMap { entries: metadata.into_iter().collect() }),
                tags: list(tags, clear_tags),
                expires_at,
                clear_expires_at,
            };
            let key = client.update_key(authed(req, token)?).await.map_err(status_error)?.into_inner();
            show_one(output, &key);
        }
        KeysCommand::Rotate { id, grace_period_s } => {
            let req = v1::RotateKeyRequest { id, grace_period_s };
            let resp = client.rotate_key(authed(req, token)?).await.map_err(status_error)?.into_inner();
            let key = resp.key.context("server returned no key")?;
            match output {
                Output::Json => print_json(&json!({"key": resp.secret, "id": key.id, "info": key_json(&key)})),
                Output::Table => {
                    print_keys(&[key]);
                    println!("\nnew secret (shown once): {}", resp.secret);
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let key = client
                .revoke_key(authed(v1::RevokeKeyRequest { id }, token)?)
                .await
                .map_err(status_error)?
                .into_inner();
            show_one(output, &key);
        }
    }
    Ok(())
}

/// A key in the same JSON shape as the REST API's key view: `KeyInfo`'s generated
/// serde (its `hint` renamed `key_hint`), so a field added to the message is printed
/// without an edit here.
pub(crate) fn key_json(k: &v1::KeyInfo) -> serde_json::Value {
    // Cannot fail: every map in `KeyInfo` has string keys.
    serde_json::to_value(k).unwrap_or_default()
}

fn show_one(output: Output, key: &v1::KeyInfo) {
    match output {
        Output::Json => print_json(&key_json(key)),
        Output::Table => print_keys(std::slice::from_ref(key)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_json_keeps_the_rest_view_shape() {
        let k = v1::KeyInfo {
            id: "key_1".into(),
            name: Some("checkout".into()),
            project_id: "prj_1".into(),
            principal: None,
            status: "active".into(),
            hint: "tg_…a1b2".into(),
            models_allowed: vec!["gpt-4o*".into()],
            rpm: Some(60),
            tpm: None,
            max_concurrency: Some(4),
            metadata: [("customer".to_owned(), "acme".to_owned())].into_iter().collect(),
            expires_at: None,
            created_at: "2026-12-01T00:00:00Z".into(),
            rotated_at: Some("2026-12-02T00:00:00Z".into()),
            revoked_at: None,
            tags: vec!["env:prod".into()],
        };
        // The shape tollctl printed field by field before the message serialized itself.
        let expected = json!({
            "id": k.id, "name": k.name, "project_id": k.project_id, "principal": k.principal,
            "status": k.status, "key_hint": k.hint, "models_allowed": k.models_allowed,
            "rpm": k.rpm, "tpm": k.tpm, "max_concurrency": k.max_concurrency,
            "metadata": k.metadata, "tags": k.tags, "expires_at": k.expires_at, "created_at": k.created_at,
            "rotated_at": k.rotated_at, "revoked_at": k.revoked_at,
        });
        assert_eq!(key_json(&k), expected);
    }
}
