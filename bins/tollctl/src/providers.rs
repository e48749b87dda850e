//! `tollctl providers ...`: provider credentials. A credential is read from an
//! environment variable (never a flag, which would land in shell history and `ps`), sent
//! once, and never shown again: the control plane answers with a hint and a fingerprint.

use crate::cli::{Output, authed, print_json, print_table, status_error};
use clap::{Args, Subcommand};
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// Where a credential comes from.
#[derive(Debug, Args)]
pub(crate) struct ApiKeyArgs {
    /// Read the provider's API key from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
}

impl ApiKeyArgs {
    fn read(&self) -> anyhow::Result<Option<String>> {
        self.api_key_env.as_deref().map(crate::apply::env_secret).transpose()
    }
}

/// `tollctl providers ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProvidersCommand {
    /// Add a provider credential.
    Create {
        /// Unique name, referenced by model deployments.
        name: String,
        /// openai, anthropic, gemini, azure-openai, openai-compatible or mock.
        #[arg(long)]
        kind: String,
        /// Base URL (defaults per kind).
        #[arg(long)]
        base_url: Option<String>,
        #[command(flatten)]
        api_key: ApiKeyArgs,
        /// Requests per minute on this credential.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute on this credential.
        #[arg(long)]
        tpm: Option<u64>,
        /// Routing priority (lower first): among deployments of equal priority, the
        /// provider with the lower one is tried first.
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
        /// Kind-specific settings as a JSON object, e.g. '{"latency_ms": 20}'.
        #[arg(long)]
        extra: Option<String>,
    },
    /// List providers (credentials as hint and fingerprint only).
    List,
    /// Show one provider.
    Get {
        /// Provider id or name.
        provider: String,
    },
    /// Change a provider; options left out stay as they are.
    Update {
        /// Provider id or name.
        provider: String,
        /// New base URL.
        #[arg(long)]
        base_url: Option<String>,
        #[command(flatten)]
        api_key: ApiKeyArgs,
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
        /// Routing priority (lower first): among deployments of equal priority, the
        /// provider with the lower one is tried first.
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
        /// Replace the kind-specific settings (a JSON object).
        #[arg(long)]
        extra: Option<String>,
    },
}

/// A provider in the same JSON shape as the REST API's provider view.
pub(crate) fn provider_json(p: &v1::ProviderInfo) -> serde_json::Value {
    let extra: serde_json::Value = serde_json::from_str(&p.extra_json).unwrap_or(serde_json::Value::Null);
    json!({
        "id": p.id, "name": p.name, "kind": p.kind, "base_url": p.base_url,
        "api_key_hint": p.api_key_hint, "api_key_fingerprint": p.api_key_fingerprint,
        "rpm": p.rpm, "tpm": p.tpm, "priority": p.priority, "extra": extra, "created_at": p.created_at,
    })
}

fn print_providers(providers: &[v1::ProviderInfo]) {
    let header = ["ID", "NAME", "KIND", "BASE_URL", "KEY", "RPM", "TPM", "PRIORITY", "CREATED"];
    let cap = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 9]> = providers
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                p.name.clone(),
                p.kind.clone(),
                p.base_url.clone(),
                p.api_key_hint.clone(),
                cap(p.rpm.map(|v| v.to_string())),
                cap(p.tpm.map(|v| v.to_string())),
                p.priority.to_string(),
                p.created_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

/// Runs a `providers` command.
pub(crate) async fn providers(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: ProvidersCommand,
) -> anyhow::Result<()> {
    let provider = match cmd {
        ProvidersCommand::Create { name, kind, base_url, api_key, rpm, tpm, priority, extra } => {
            let req = v1::CreateProviderRequest {
                name,
                kind,
                base_url,
                api_key: api_key.read()?,
                rpm,
                tpm,
                priority,
                extra_json: extra,
            };
            client.create_provider(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        ProvidersCommand::List => {
            let resp = client.list_providers(authed(v1::ListProvidersRequest {}, token)?).await;
            let providers = resp.map_err(status_error)?.into_inner().providers;
            match output {
                Output::Json => print_json(&json!({"data": providers.iter().map(provider_json).collect::<Vec<_>>()})),
                Output::Table => print_providers(&providers),
            }
            return Ok(());
        }
        ProvidersCommand::Get { provider } => {
            let req = authed(v1::GetProviderRequest { provider }, token)?;
            client.get_provider(req).await.map_err(status_error)?.into_inner()
        }
        ProvidersCommand::Update { provider, base_url, api_key, rpm, clear_rpm, tpm, clear_tpm, priority, extra } => {
            let req = v1::UpdateProviderRequest {
                provider,
                base_url,
                api_key: api_key.read()?,
                rpm,
                clear_rpm,
                tpm,
                clear_tpm,
                priority,
                extra_json: extra,
            };
            client.update_provider(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
    };
    match output {
        Output::Json => print_json(&provider_json(&provider)),
        Output::Table => print_providers(std::slice::from_ref(&provider)),
    }
    Ok(())
}
