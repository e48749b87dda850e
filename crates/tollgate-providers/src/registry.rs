//! The registry of upstream kinds: one line per kind, giving its wire spelling and the
//! folder that serves it. Everything the gateway asks of a kind (its chat dialect, the
//! operations it serves, its default base URL, how to build its adapter) is read from
//! the [`Spec`] that folder declares, so adding a provider is one folder plus one line
//! here (see `docs/providers.md`).

use crate::head::CapField;
use crate::{Dialect, HttpClient, Operation, Provider, ProviderConfig, ProviderError};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tollgate_core::ParseEnumError;

/// How a folder builds its adapter for a configuration.
pub(crate) type Build = fn(Arc<ProviderConfig>, &HttpClient) -> Result<Arc<dyn Provider>, ProviderError>;

/// What the gateway needs to know of an upstream kind; each provider folder declares its own.
pub(crate) struct Spec {
    /// The dialect the kind's chat endpoint speaks.
    pub(crate) chat_dialect: Dialect,
    /// The base URL used when none is configured.
    pub(crate) default_base_url: Option<&'static str>,
    /// Whether the kind serves OpenAI Responses and embeddings besides chat.
    pub(crate) responses_and_embeddings: bool,
    /// The output-cap field an OpenAI chat body for this kind gets when it has none.
    pub(crate) chat_cap_field: CapField,
    /// Builds the kind's adapter for a configuration.
    pub(crate) build: Build,
}

/// Declares [`ProviderKind`] from the registry's lines, so a kind's variant, spelling and
/// folder cannot drift apart.
macro_rules! registry {
    ($($(#[$doc:meta])* $kind:ident = $name:literal => $spec:path,)+) => {
        /// The kind of upstream API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProviderKind {
            $($(#[$doc])* $kind,)+
        }

        impl ProviderKind {
            /// Every kind.
            pub const ALL: &'static [ProviderKind] = &[$(ProviderKind::$kind),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProviderKind::$kind => $name,)+
                }
            }

            fn spec(self) -> &'static Spec {
                match self {
                    $(ProviderKind::$kind => &$spec,)+
                }
            }
        }

        /// Every wire spelling, for the error naming what is accepted.
        const SPELLINGS: &str = concat!($($name, " "),+);
    };
}

registry! {
    /// api.openai.com.
    OpenAi = "openai" => crate::openai::OPENAI,
    /// Anthropic Messages API.
    Anthropic = "anthropic" => crate::anthropic::SPEC,
    /// Google Gemini.
    Gemini = "gemini" => crate::gemini::SPEC,
    /// Azure OpenAI deployments.
    AzureOpenAi = "azure-openai" => crate::azure::SPEC,
    /// Any server speaking the OpenAI API at its own base URL.
    OpenAiCompatible = "openai-compatible" => crate::openai::COMPATIBLE,
    /// The in-process mock, for demos and tests.
    Mock = "mock" => crate::mock::SPEC,
}

impl ProviderKind {
    /// Whether this build has an adapter for the kind.
    pub fn is_supported(self) -> bool {
        true
    }

    /// The base URL used when none is configured.
    pub fn default_base_url(self) -> Option<&'static str> {
        self.spec().default_base_url
    }

    /// The dialect this kind's chat endpoint speaks.
    pub fn chat_dialect(self) -> Dialect {
        self.spec().chat_dialect
    }

    /// The output-cap field an OpenAI chat body sent to this kind gets when the caller
    /// gave none: `max_completion_tokens` at OpenAI and Azure (whose reasoning models
    /// refuse `max_tokens`), `max_tokens` everywhere else (what OpenAI-compatible servers
    /// know; Anthropic's own field).
    pub fn chat_cap_field(self) -> CapField {
        self.spec().chat_cap_field
    }

    /// Whether the kind serves the operation at all: chat everywhere; Responses and
    /// embeddings only at OpenAI-dialect upstreams (not the mock).
    pub fn serves(self, op: Operation) -> bool {
        match op {
            Operation::ChatCompletions => true,
            Operation::Responses | Operation::Embeddings => self.spec().responses_and_embeddings,
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
            expected: SPELLINGS.trim_end(),
        })
    }
}

/// Builds the provider for a configuration.
pub fn build_provider(cfg: Arc<ProviderConfig>, client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    (cfg.kind.spec().build)(cfg, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_spelling_and_the_error_lists_them_all() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(*kind));
        }
        let err = "carrier-pigeon".parse::<ProviderKind>().unwrap_err();
        assert_eq!(err.expected, "openai anthropic gemini azure-openai openai-compatible mock");
    }

    #[test]
    fn official_openai_gets_max_completion_tokens_and_compatible_servers_max_tokens() {
        use ProviderKind::*;
        for (kind, want) in [
            (OpenAi, CapField::MaxCompletionTokens),
            (AzureOpenAi, CapField::MaxCompletionTokens),
            (OpenAiCompatible, CapField::MaxTokens),
            (Mock, CapField::MaxTokens),
            (Anthropic, CapField::MaxTokens),
            (Gemini, CapField::MaxTokens),
        ] {
            assert_eq!(kind.chat_cap_field(), want, "{kind}");
        }
    }
}
