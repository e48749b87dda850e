//! Provider credentials: create, list, read and update (rotation of the credential
//! itself). A credential is encrypted before it reaches the store and is shown only as
//! a hint and a SHA-256 fingerprint, never returned.

use super::auth::{Scope, Target};
use super::{Actor, Service, check_name, enum_schema, new_id};
use crate::ControlError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_core::{ProviderId, Timestamp};
use tollgate_providers::ProviderKind;
use tollgate_store::ProviderRecord;
use utoipa::ToSchema;

/// `POST /api/v1/providers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Unique name, referenced by model deployments.
    pub name: String,
    /// `openai`, `openai-compatible`, `mock`, ...
    #[schema(schema_with = provider_kind_schema)]
    pub kind: String,
    /// Base URL; defaults per kind. Must not carry credentials (`user:password@`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The platform's credential at the provider (stored encrypted).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Requests per minute on this credential.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute on this credential.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// The provider's priority (lower first, default 0): among a model's deployments of
    /// equal deployment priority, the ones on the provider with the lower priority are
    /// tried first. A deployment's own `priority` always comes before it.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Kind-specific settings, e.g. `{"latency_ms": 20}` for `mock`.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// `PATCH /api/v1/providers/{id}`: absent fields are left alone, `null` clears.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    /// New base URL; must not carry credentials (`user:password@`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// New credential (rotation); stored encrypted, never returned.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Requests per minute on this credential; `null` removes the cap.
    #[serde(default, deserialize_with = "super::double_option")]
    pub rpm: Option<Option<u32>>,
    /// Tokens per minute on this credential; `null` removes the cap.
    #[serde(default, deserialize_with = "super::double_option")]
    pub tpm: Option<Option<u64>>,
    /// The provider's priority (lower first, default 0): among a model's deployments of
    /// equal deployment priority, the ones on the provider with the lower priority are
    /// tried first. A deployment's own `priority` always comes before it.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Kind-specific settings (replaces them).
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// A provider as the API shows it: the credential only as a hint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderView {
    /// Id.
    pub id: ProviderId,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Base URL.
    pub base_url: String,
    /// Masked credential (`sk-…abcd`).
    pub api_key_hint: String,
    /// `sha256:` and 12 hex digits of the credential's SHA-256 (empty for none): whether
    /// the stored credential is one you hold, without it ever being returned.
    pub api_key_fingerprint: String,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// The provider's priority (lower first): orders a model's deployments of equal
    /// deployment priority.
    pub priority: i32,
    /// Kind-specific settings (`{"latency_ms": 20}`, `{"api_version": ...}`), so a
    /// declarative client can compare them; `null` when none.
    pub extra: serde_json::Value,
    /// Created.
    pub created_at: Timestamp,
}

/// The provider kinds `POST /api/v1/providers` accepts.
fn provider_kind_schema() -> utoipa::openapi::Object {
    enum_schema(ProviderKind::ALL.iter().map(|k| k.as_str()))
}

/// A provider's base URL, checked for its kind and without a trailing slash.
fn check_base_url(kind: ProviderKind, url: &str) -> Result<String, ControlError> {
    // Refused before anything else, so no later message can quote the URL's password.
    if has_userinfo(url) {
        return Err(ControlError::invalid(
            "base_url",
            "must not carry credentials (user:password@); give the provider's credential as api_key",
        ));
    }
    let base_url = url.trim_end_matches('/').to_owned();
    if kind != ProviderKind::Mock {
        let uri: http::Uri = base_url.parse().map_err(|_| ControlError::invalid("base_url", "not a valid URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ControlError::invalid("base_url", "must be an http(s) URL with a host"));
        }
    }
    Ok(base_url)
}

/// Whether `url`'s authority (between `scheme://` and the path, query or fragment)
/// holds a `user@` or `user:password@` part. A URL without `://` is judged whole, so a
/// credential is caught even where the URL is not otherwise parsed (kind `mock`).
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// `url` with any `user:password@` replaced by `***@`, for views.
fn redact_userinfo(url: &str) -> String {
    if !has_userinfo(url) {
        return url.to_owned();
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}***@{host}{tail}")
}

/// A provider credential's shape, for its kind.
fn check_api_key(kind: ProviderKind, api_key: &str) -> Result<(), ControlError> {
    if api_key.len() > 4096 || api_key.chars().any(char::is_control) {
        return Err(ControlError::invalid("api_key", "must be at most 4096 printable characters"));
    }
    if matches!(kind, ProviderKind::OpenAi) && api_key.is_empty() {
        return Err(ControlError::invalid("api_key", "required for kind openai"));
    }
    Ok(())
}

fn mask(api_key: &str) -> String {
    let n = api_key.chars().count();
    if n == 0 {
        return String::new();
    }
    if n <= 8 {
        return "…".into();
    }
    let head: String = api_key.chars().take(3).collect();
    let tail: String = api_key.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

/// `"sha256:"` and the first 12 hex digits of the credential's SHA-256: lets a
/// declarative client tell whether the stored credential is the one it holds without the
/// credential ever leaving the control plane. Empty for no credential.
pub(crate) fn fingerprint(api_key: &str) -> String {
    if api_key.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(api_key.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn provider_view(r: &ProviderRecord) -> ProviderView {
    ProviderView {
        id: r.id.clone(),
        name: r.name.clone(),
        kind: r.kind.clone(),
        // A row stored before credentials in URLs were refused must not echo them.
        base_url: redact_userinfo(&r.base_url),
        api_key_hint: r.api_key_hint.clone(),
        api_key_fingerprint: String::new(),
        rpm: r.rpm,
        tpm: r.tpm,
        priority: r.priority,
        extra: r.extra.clone(),
        created_at: r.created_at,
    }
}

impl Service {
    /// Creates a provider credential; the key is encrypted before it reaches the store.
    pub async fn create_provider(&self, actor: &Actor, input: CreateProvider) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        check_name("name", &input.name)?;
        let kind: ProviderKind = input.kind.parse().map_err(|e| ControlError::invalid("kind", format!("{e}")))?;
        if !kind.is_supported() {
            let supported: Vec<&str> =
                ProviderKind::ALL.iter().filter(|k| k.is_supported()).map(|k| k.as_str()).collect();
            return Err(ControlError::invalid(
                "kind",
                format!("{kind} is not supported by this build (supported: {})", supported.join(", ")),
            ));
        }
        let base_url = match input.base_url.as_deref().or(kind.default_base_url()) {
            Some(u) => check_base_url(kind, u)?,
            None => return Err(ControlError::invalid("base_url", format!("required for kind {kind}"))),
        };
        let api_key = input.api_key.unwrap_or_default();
        check_api_key(kind, &api_key)?;
        let extra = input.extra.unwrap_or(serde_json::Value::Null);
        if !(extra.is_null() || extra.is_object()) {
            return Err(ControlError::invalid("extra", "must be an object"));
        }
        // A control plane left running across a rotation must not add a credential under
        // the retired key.
        crate::rotation::check_master_key(&self.store, &self.secrets.master_key).await?;
        let now = Timestamp::now();
        let rec = ProviderRecord {
            id: ProviderId::new(new_id(ProviderId::PREFIX)),
            name: input.name,
            kind: kind.as_str().to_owned(),
            base_url,
            api_key_ciphertext: self.secrets.master_key.encrypt(&api_key)?,
            api_key_hint: mask(&api_key),
            rpm: input.rpm.map(i64::from),
            tpm: input.tpm.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            priority: input.priority.unwrap_or(0),
            extra,
            created_at: now,
            updated_at: now,
        };
        let view = self.provider_view(&rec)?;
        let w = self.begin_write().await?;
        let rev = w.store().create_provider(&rec).await?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "provider.create", ("provider", rec.id.as_str()), meta).await?;
        Ok(view)
    }

    /// Lists providers (credentials only as hints).
    pub async fn list_providers(&self, actor: &Actor) -> Result<Vec<ProviderView>, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        self.store.list_providers().await?.iter().map(|p| self.provider_view(p)).collect()
    }

    /// Reads a provider credential (the credential itself only as hint and fingerprint).
    pub async fn get_provider(&self, actor: &Actor, id_or_name: &str) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        let rec = self.provider_record(id_or_name).await?;
        self.provider_view(&rec)
    }

    async fn provider_record(&self, id_or_name: &str) -> Result<ProviderRecord, ControlError> {
        self.store.find_provider(id_or_name).await?.ok_or_else(|| super::auth::not_found("provider", id_or_name))
    }

    /// Changes a provider credential: its URL, caps, priority, settings, or the
    /// credential itself (re-encrypted with a fresh nonce). Name and kind are fixed.
    pub async fn update_provider(
        &self,
        actor: &Actor,
        id_or_name: &str,
        patch: UpdateProvider,
    ) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        let mut rec = self.provider_record(id_or_name).await?;
        let kind: ProviderKind =
            rec.kind.parse().map_err(|e| ControlError::Internal(format!("stored provider kind: {e}")))?;
        let mut changed = Vec::new();
        if let Some(url) = patch.base_url {
            rec.base_url = check_base_url(kind, &url)?;
            changed.push("base_url");
        }
        if let Some(key) = patch.api_key {
            check_api_key(kind, &key)?;
            crate::rotation::check_master_key(&self.store, &self.secrets.master_key).await?;
            rec.api_key_ciphertext = self.secrets.master_key.encrypt(&key)?;
            rec.api_key_hint = mask(&key);
            changed.push("api_key");
        }
        if let Some(v) = patch.rpm {
            rec.rpm = v.map(i64::from);
            changed.push("rpm");
        }
        if let Some(v) = patch.tpm {
            rec.tpm = v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
            changed.push("tpm");
        }
        if let Some(v) = patch.priority {
            rec.priority = v;
            changed.push("priority");
        }
        if let Some(extra) = patch.extra {
            if !(extra.is_null() || extra.is_object()) {
                return Err(ControlError::invalid("extra", "must be an object"));
            }
            rec.extra = extra;
            changed.push("extra");
        }
        rec.updated_at = Timestamp::now();
        let view = self.provider_view(&rec)?;
        let mut audit = serde_json::to_value(&view).unwrap_or_default();
        if let Some(m) = audit.as_object_mut() {
            m.insert("changed".into(), serde_json::json!(changed));
        }
        let w = self.begin_write().await?;
        let rev = w.store().update_provider(&rec).await?;
        self.commit_audited(w, Some(rev), actor, "provider.update", ("provider", rec.id.as_str()), audit).await?;
        Ok(view)
    }

    /// A provider as the API shows it, with the credential's fingerprint.
    pub(crate) fn provider_view(&self, r: &ProviderRecord) -> Result<ProviderView, ControlError> {
        let key = self.secrets.master_key.decrypt(&r.api_key_ciphertext)?;
        let mut view = provider_view(r);
        view.api_key_fingerprint = fingerprint(&key);
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_to_a_hint() {
        assert_eq!(mask(""), "");
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("sk-proj-abcdefghijklmnop"), "sk-…mnop");
    }

    #[test]
    fn fingerprints_tell_credentials_apart_without_revealing_them() {
        assert_eq!(fingerprint(""), "");
        let a = fingerprint("sk-proj-abcdefghijklmnop");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 12, "{a}");
        assert_eq!(a, fingerprint("sk-proj-abcdefghijklmnop"));
        assert_ne!(a, fingerprint("sk-proj-abcdefghijklmnoq"));
        assert!(!a.contains("mnop"));
    }

    #[test]
    fn a_url_with_a_user_or_password_is_refused_and_an_at_sign_elsewhere_is_not() {
        for url in ["https://u:p@h/v1", "https://u@h", "http://:p@127.0.0.1:9", "mock://u:p@x", "u:p@h/x"] {
            let err = check_base_url(ProviderKind::OpenAiCompatible, url).unwrap_err();
            assert_eq!(err.field(), Some("base_url"), "{url}");
            assert!(!err.to_string().contains("u:p"), "{err}");
        }
        for url in ["https://h/v1/@models", "https://h/v1?user=a@b", "https://h/v1#a@b"] {
            assert!(check_base_url(ProviderKind::OpenAiCompatible, url).is_ok(), "{url}");
            assert_eq!(redact_userinfo(url), url);
        }
    }

    #[test]
    fn a_stored_url_with_credentials_is_shown_without_them() {
        assert_eq!(redact_userinfo("https://u:secret@h:8443/v1?x=a@b"), "https://***@h:8443/v1?x=a@b");
        assert_eq!(redact_userinfo("https://u@h"), "https://***@h");
        assert_eq!(redact_userinfo("u:secret@h/x"), "***@h/x");
    }
}
