//! Provider configuration as the gateway holds it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tollgate_core::{ParseEnumError, ProviderId};

/// The kind of upstream API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// api.openai.com.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini.
    Gemini,
    /// Azure OpenAI deployments.
    AzureOpenAi,
    /// Any server speaking the OpenAI API at its own base URL.
    OpenAiCompatible,
    /// The in-process mock, for demos and tests.
    Mock,
}

impl ProviderKind {
    /// Every kind.
    pub const ALL: &'static [ProviderKind] = &[
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::AzureOpenAi,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Mock,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::AzureOpenAi => "azure-openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Mock => "mock",
        }
    }

    /// Whether this build has an adapter for the kind.
    pub fn is_supported(self) -> bool {
        true
    }

    /// The base URL used when none is configured.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::Mock => Some("mock://"),
            ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| ParseEnumError {
            what: "provider kind",
            given: s.chars().take(64).collect(),
            expected: "openai anthropic gemini azure-openai openai-compatible mock",
        })
    }
}

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
