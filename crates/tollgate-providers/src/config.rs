//! Provider configuration as the gateway holds it (the kinds are in the registry).

use crate::ProviderKind;
use std::fmt;
use std::sync::Arc;
use tollgate_core::ProviderId;

/// A provider credential in clear, as only the gateway's memory holds it. `Debug` and
/// `Display` are redacted.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a credential.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        ApiKey(key.into())
    }

    /// The credential, for the one header that carries it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no credential is configured (e.g. the mock provider).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// One configured upstream credential.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Record id.
    pub id: ProviderId,
    /// Unique name, referenced by model deployments.
    pub name: Arc<str>,
    /// Upstream kind.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1` (no trailing slash needed).
    pub base_url: Arc<str>,
    /// The platform's credential at this provider.
    pub api_key: ApiKey,
    /// Requests per minute allowed on this credential.
    pub rpm: Option<u32>,
    /// Tokens per minute allowed on this credential.
    pub tpm: Option<u64>,
    /// Fallback priority (lower first).
    pub priority: i32,
    /// Kind-specific settings (e.g. the mock's `latency_ms`).
    pub extra: serde_json::Value,
}
