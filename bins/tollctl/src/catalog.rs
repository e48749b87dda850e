//! `tollctl models ...`, `aliases ...` and `routing-policies ...`: the model catalog and
//! how requests are routed to it.

use crate::cli::{Output, authed, print_json, print_table, status_error};
use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// Prices in USD per 1M tokens; zero is a price.
#[derive(Debug, Args)]
pub(crate) struct PriceArgs {
    /// Per 1M prompt tokens.
    #[arg(long = "input-per-mtok", allow_hyphen_values = true, requires = "output_price")]
    input_price: Option<String>,
    /// Per 1M generated tokens.
    #[arg(long = "output-per-mtok", allow_hyphen_values = true, requires = "input_price")]
    output_price: Option<String>,
    /// Per 1M cached prompt tokens (default: the input price).
    #[arg(long = "cached-input-per-mtok", allow_hyphen_values = true, requires = "input_price")]
    cached_input_price: Option<String>,
    /// Per 1M prompt tokens written to the cache (default: the input price).
    #[arg(long = "cache-write-per-mtok", allow_hyphen_values = true, requires = "input_price")]
    cache_write_price: Option<String>,
}

impl PriceArgs {
    /// The prices given, if any.
    fn pricing(self) -> Option<v1::ModelPricing> {
        let (input, output) = (self.input_price?, self.output_price?);
        Some(v1::ModelPricing {
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: self.cached_input_price,
            cache_write_per_mtok: self.cache_write_price,
        })
    }
}

/// `image=N,audio=N,file=N` (any subset, at least one): the most tokens one part of
/// that kind may count for.
pub(crate) fn parse_tokens_per_part(s: &str) -> Result<v1::TokensPerPart, String> {
    let mut out = v1::TokensPerPart::default();
    for item in s.split(',') {
        let (kind, n) = item.split_once('=').ok_or_else(|| format!("expected KIND=N, got {item:?}"))?;
        let n: u64 = n.trim().parse().map_err(|_| format!("{kind}: expected a positive integer, got {n:?}"))?;
        let slot = match kind.trim() {
            "image" => &mut out.image,
            "audio" => &mut out.audio,
            "file" => &mut out.file,
            other => return Err(format!("unknown part kind {other:?}; expected image, audio or file")),
        };
        if slot.replace(n).is_some() {
            return Err(format!("{kind} is given twice"));
        }
    }
    Ok(out)
}

/// `PROVIDER/MODEL`: split at the first `/`, so an upstream model name may hold more.
fn parse_deployment(s: &str) -> Result<v1::Deployment, String> {
    match s.split_once('/') {
        Some((p, m)) if !p.is_empty() && !m.is_empty() => {
            Ok(v1::Deployment { provider: p.to_owned(), model: m.to_owned(), ..Default::default() })
        }
        _ => Err(format!("expected PROVIDER/MODEL, got {s:?}")),
    }
}

/// `tollctl models ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// List models with their prices (USD per 1M tokens) and where the prices came from.
    List,
    /// Show one model.
    Get {
        /// Model id or public name.
        model: String,
    },
    /// Add a model to the catalog; without prices it takes the shipped catalog's list
    /// price of its first deployment, if there is one.
    Create {
        /// The public name callers use.
        name: String,
        /// Where it is served, as PROVIDER/MODEL, in priority order; repeat for several.
        #[arg(long = "deployment", value_parser = parse_deployment, required = true)]
        deployments: Vec<v1::Deployment>,
        #[command(flatten)]
        prices: PriceArgs,
        /// Output tokens assumed when a request sets no max_tokens.
        #[arg(long)]
        max_output_tokens: Option<u64>,
        /// The most tokens one part may count for, as image=N,audio=N,file=N (any subset).
        #[arg(long, value_parser = parse_tokens_per_part)]
        max_tokens_per_part: Option<v1::TokensPerPart>,
    },
    /// Change a model; options left out stay as they are.
    Update {
        /// Model id or public name.
        model: String,
        /// Replace the deployments, as PROVIDER/MODEL in priority order; repeat for several.
        #[arg(long = "deployment", value_parser = parse_deployment)]
        deployments: Vec<v1::Deployment>,
        #[command(flatten)]
        prices: PriceArgs,
        /// Output tokens assumed when a request sets no max_tokens.
        #[arg(long, conflicts_with = "clear_max_output_tokens")]
        max_output_tokens: Option<u64>,
        /// Remove the output-token default.
        #[arg(long)]
        clear_max_output_tokens: bool,
        /// Replace the per-part maxima, as image=N,audio=N,file=N (a kind left out is
        /// cleared).
        #[arg(long, value_parser = parse_tokens_per_part, conflicts_with = "clear_max_tokens_per_part")]
        max_tokens_per_part: Option<v1::TokensPerPart>,
        /// Remove every per-part maximum.
        #[arg(long)]
        clear_max_tokens_per_part: bool,
    },
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

/// `tollctl aliases ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AliasesCommand {
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

/// `tollctl routing-policies ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PoliciesCommand {
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
    /// Replace a routing policy whole; its scope stays.
    Update {
        /// Policy id.
        id: String,
        /// The policy as JSON; fields left out take the defaults.
        #[arg(long)]
        policy: String,
    },
    /// Delete a routing policy; its scope falls back to the next level.
    Delete {
        /// Policy id.
        id: String,
    },
}

/// Runs a `models` command.
pub(crate) async fn models(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: ModelsCommand,
) -> anyhow::Result<()> {
    let set_price = matches!(cmd, ModelsCommand::SetPrice { .. });
    let model = match cmd {
        ModelsCommand::List => {
            let req = authed(v1::ListModelsRequest {}, token)?;
            let models = client.list_models(req).await.map_err(status_error)?.into_inner().models;
            match output {
                Output::Json => print_json(&json!(models.iter().map(model_json).collect::<Vec<_>>())),
                Output::Table => print_models(&models),
            }
            return Ok(());
        }
        ModelsCommand::Get { model } => {
            client.get_model(authed(v1::GetModelRequest { model }, token)?).await.map_err(status_error)?.into_inner()
        }
        ModelsCommand::Create { name, deployments, prices, max_output_tokens, max_tokens_per_part } => {
            let req = v1::CreateModelRequest {
                name,
                deployments,
                pricing: prices.pricing(),
                max_output_tokens,
                max_tokens_per_part,
            };
            client.create_model(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        ModelsCommand::Update {
            model,
            deployments,
            prices,
            max_output_tokens,
            clear_max_output_tokens,
            max_tokens_per_part,
            clear_max_tokens_per_part,
        } => {
            let req = v1::UpdateModelRequest {
                model,
                pricing: prices.pricing(),
                max_output_tokens,
                clear_max_output_tokens,
                deployments: (!deployments.is_empty()).then_some(v1::DeploymentList { deployments }),
                max_tokens_per_part,
                clear_max_tokens_per_part,
            };
            if req.pricing.is_none()
                && req.deployments.is_none()
                && req.max_output_tokens.is_none()
                && !clear_max_output_tokens
                && req.max_tokens_per_part.is_none()
                && !clear_max_tokens_per_part
            {
                return Err(anyhow!(
                    "nothing to change: give --deployment, prices, --max-output-tokens or --max-tokens-per-part"
                ));
            }
            client.update_model(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        ModelsCommand::SetPrice { model, input_price, output_price, cached_input_price, cache_write_price } => {
            let req = v1::SetModelPriceRequest {
                model,
                input_per_mtok: input_price,
                output_per_mtok: output_price,
                cached_input_per_mtok: cached_input_price,
                cache_write_per_mtok: cache_write_price,
            };
            client.set_model_price(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
    };
    match output {
        // set-price has always printed a one-element list; scripts may rely on it.
        Output::Json if set_price => print_json(&json!([model_json(&model)])),
        Output::Json => print_json(&model_json(&model)),
        Output::Table => print_models(std::slice::from_ref(&model)),
    }
    Ok(())
}

/// A model in the same JSON shape as the REST API's model view.
pub(crate) fn model_json(m: &v1::ModelInfo) -> serde_json::Value {
    let pricing = m.input_per_mtok.as_ref().map(|input| {
        json!({"input_per_mtok": input, "output_per_mtok": m.output_per_mtok,
               "cached_input_per_mtok": m.cached_input_per_mtok, "cache_write_per_mtok": m.cache_write_per_mtok})
    });
    let mut v = json!({
        "id": m.id, "name": m.name,
        "deployments": m.deployments.iter().map(|d| json!({
            "provider": d.provider, "model": d.model, "priority": d.priority, "weight": d.weight.unwrap_or(1),
        })).collect::<Vec<_>>(),
        "pricing": pricing, "price_source": m.price_source, "max_output_tokens": m.max_output_tokens,
    });
    // As in the REST view: only a model with a per-part maximum shows them.
    if let (Some(t), Some(obj)) = (&m.max_tokens_per_part, v.as_object_mut()) {
        let parts: serde_json::Map<String, serde_json::Value> =
            [("image", t.image), ("audio", t.audio), ("file", t.file)]
                .into_iter()
                .filter_map(|(k, n)| n.map(|n| (k.to_owned(), n.into())))
                .collect();
        obj.insert("max_tokens_per_part".into(), parts.into());
    }
    v
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

/// Runs an `aliases` command.
pub(crate) async fn aliases(
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

/// Runs a `routing-policies` command.
pub(crate) async fn policies(
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
        PoliciesCommand::Update { id, policy } => {
            let req = v1::UpdateRoutingPolicyRequest { id, policy_json: policy };
            vec![client.update_routing_policy(authed(req, token)?).await.map_err(status_error)?.into_inner()]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_part_maxima_parse_any_subset_and_refuse_the_rest() {
        let t = parse_tokens_per_part("image=1500,file=20000").unwrap();
        assert_eq!((t.image, t.audio, t.file), (Some(1500), None, Some(20_000)));
        assert_eq!(parse_tokens_per_part("audio=7").unwrap().audio, Some(7));
        for bad in ["video=5", "image=", "image=-1", "image", "image=1,image=2", ""] {
            assert!(parse_tokens_per_part(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
