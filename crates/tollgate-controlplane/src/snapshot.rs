//! The snapshot builder: the complete configuration gateways serve from, read from the
//! store at one revision. [`crate::changes`] diffs consecutive snapshots into the
//! change each gateway receives.

use crate::ControlError;
use crate::service::Service;
use std::collections::HashMap;
use tollgate_core::{OnBreach, Timestamp};
use tollgate_keys::KeyHash;
use tollgate_proto::v1;
use tollgate_store::{DeploymentPricing, ProjectRecord};

/// A deployment's own price on the wire.
fn deployment_pricing_wire(p: &DeploymentPricing) -> v1::Pricing {
    v1::Pricing {
        input_per_mtok_nanos: p.input_per_mtok,
        output_per_mtok_nanos: p.output_per_mtok,
        cached_input_per_mtok_nanos: p.cached_input_per_mtok,
        cache_write_per_mtok_nanos: p.cache_write_per_mtok,
    }
}

impl Service {
    /// Builds the complete configuration gateways serve from.
    pub async fn build_snapshot(&self) -> Result<v1::Snapshot, ControlError> {
        let data = self.store().snapshot().await?;
        let projects: HashMap<&str, &ProjectRecord> = data.projects.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut providers = Vec::with_capacity(data.providers.len());
        for p in &data.providers {
            let api_key = match self.secrets().master_key.decrypt(&p.api_key_ciphertext) {
                Ok(k) => k,
                Err(e) => {
                    // After a rotation under a running control plane every credential is
                    // unreadable: keep the previous snapshot rather than drop them all.
                    crate::rotation::check_master_key(self.store(), &self.secrets().master_key).await?;
                    // One unreadable credential must not take the whole fleet down.
                    tracing::error!(provider = %p.name, error = %e, "skipping provider whose credential cannot be decrypted");
                    continue;
                }
            };
            providers.push(v1::Provider {
                id: p.id.to_string(),
                name: p.name.clone(),
                kind: p.kind.clone(),
                base_url: p.base_url.clone(),
                api_key,
                rpm: p.rpm.and_then(|v| u32::try_from(v).ok()),
                tpm: p.tpm.and_then(|v| u64::try_from(v).ok()),
                priority: p.priority,
                extra_json: if p.extra.is_null() { String::new() } else { p.extra.to_string() },
            });
        }
        let models = data
            .models
            .iter()
            .map(|m| v1::Model {
                id: m.id.to_string(),
                name: m.name.clone(),
                deployments: m
                    .deployments
                    .iter()
                    .map(|d| v1::Deployment {
                        provider: d.provider.clone(),
                        model: d.model.clone(),
                        priority: d.priority,
                        weight: Some(d.weight),
                        pricing: d.pricing.as_ref().map(deployment_pricing_wire),
                    })
                    .collect(),
                pricing: match (m.input_per_mtok, m.output_per_mtok) {
                    (Some(i), Some(o)) => Some(v1::Pricing {
                        input_per_mtok_nanos: i,
                        output_per_mtok_nanos: o,
                        cached_input_per_mtok_nanos: m.cached_input_per_mtok,
                        cache_write_per_mtok_nanos: m.cache_write_per_mtok,
                    }),
                    _ => None,
                },
                max_output_tokens: m.max_output_tokens.and_then(|v| u64::try_from(v).ok()),
                max_image_tokens: m.max_image_tokens.and_then(|v| u64::try_from(v).ok()),
                max_audio_tokens: m.max_audio_tokens.and_then(|v| u64::try_from(v).ok()),
                max_file_tokens: m.max_file_tokens.and_then(|v| u64::try_from(v).ok()),
            })
            .collect();
        let mut keys = Vec::with_capacity(data.keys.len());
        for k in &data.keys {
            let Some(project) = projects.get(k.project_id.as_str()) else {
                tracing::error!(key = %k.id, "key's project is missing; skipping");
                continue;
            };
            let Ok(hash) = KeyHash::from_hex(&k.key_hash) else {
                tracing::error!(key = %k.id, "stored key hash is corrupt; skipping");
                continue;
            };
            let grace_secrets: Vec<v1::GraceSecret> = k
                .grace_secrets
                .iter()
                .filter_map(|g| {
                    let hash = KeyHash::from_hex(&g.key_hash).ok()?;
                    Some(v1::GraceSecret { key_hash: hash.0.to_vec(), valid_until_ms: g.valid_until.unix_millis() })
                })
                .collect();
            // The latest rotation also goes in the single old field, for gateways that
            // predate the list.
            let latest = grace_secrets.last().cloned();
            keys.push(v1::Key {
                id: k.id.to_string(),
                name: k.name.clone(),
                org_id: project.org_id.to_string(),
                team_id: project.team_id.to_string(),
                project_id: k.project_id.to_string(),
                principal: k.principal.clone(),
                status: k.status.clone(),
                expires_at_ms: k.expires_at.map(Timestamp::unix_millis),
                models_allowed: k.models_allowed.clone(),
                rpm: k.rpm.and_then(|v| u32::try_from(v).ok()),
                tpm: k.tpm.and_then(|v| u64::try_from(v).ok()),
                max_concurrency: k.max_concurrency.and_then(|v| u32::try_from(v).ok()),
                metadata: k.metadata.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
                tags: k.tags.clone(),
                key_hash: hash.0.to_vec(),
                hint: k.key_hint.clone(),
                previous_valid_until_ms: latest.as_ref().map(|g| g.valid_until_ms),
                previous_key_hash: latest.map(|g| g.key_hash),
                grace_secrets,
            });
        }
        let budgets = data
            .budgets
            .iter()
            .map(|b| v1::Budget {
                id: b.id.to_string(),
                scope: b.scope.as_str().to_owned(),
                scope_id: b.scope_id.clone(),
                limit_nanos: b.limit_nanos,
                window: b.window.as_str().to_owned(),
                on_breach: b.on_breach.as_str().to_owned(),
                alert_thresholds_permille: b.alert_thresholds.iter().map(|&t| u32::from(t)).collect(),
                limit_tokens: b.limit_tokens.and_then(|t| u64::try_from(t).ok()),
                epoch: u32::try_from(b.epoch).unwrap_or(0),
                temporary_increase: b.temporary_increase,
                temporary_increase_until_ms: b.temporary_increase_until.map(Timestamp::unix_millis),
                // Only a clamp budget carries its floor.
                clamp_floor_tokens: (b.on_breach == OnBreach::Clamp)
                    .then_some(b.clamp_floor_tokens)
                    .flatten()
                    .and_then(|t| u64::try_from(t).ok()),
            })
            .collect();
        let aliases = data
            .aliases
            .iter()
            .map(|a| v1::ModelAlias { name: a.name.clone(), target_model: a.target_model.clone() })
            .collect();
        let routing_policies = data
            .routing_policies
            .iter()
            .map(|p| v1::RoutingPolicy {
                id: p.id.clone(),
                scope: p.scope.clone(),
                scope_id: p.scope_id.clone(),
                policy_json: p.policy.to_string(),
            })
            .collect();
        Ok(v1::Snapshot {
            revision: data.revision,
            key_pepper: self.secrets().pepper.expose().to_vec(),
            providers,
            models,
            keys,
            budgets,
            aliases,
            routing_policies,
        })
    }
}
