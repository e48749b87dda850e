//! The adapters once grouped here (Anthropic, Gemini, Azure OpenAI) now live in their
//! upstreams' folders; this module keeps the public names they had, so code that built a
//! `NativeProvider` or read the version constants compiles unchanged. New code goes
//! through [`crate::build_provider`].

use crate::anthropic::AnthropicProvider;
use crate::azure::AzureProvider;
use crate::gemini::GeminiProvider;
use crate::{
    BoxFuture, HttpClient, Provider, ProviderConfig, ProviderError, ProviderKind, UpstreamRequest, UpstreamResponse,
};
use std::sync::Arc;

pub use crate::anthropic::ANTHROPIC_VERSION;
pub use crate::azure::AZURE_API_VERSION;

/// An Anthropic, Gemini or Azure OpenAI upstream: whichever of the three adapters the
/// configuration's kind names.
pub struct NativeProvider {
    kind: ProviderKind,
    inner: Box<dyn Provider>,
}

impl std::fmt::Debug for NativeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeProvider").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl NativeProvider {
    /// Prepares the adapter for an Anthropic, Gemini or Azure OpenAI configuration.
    pub fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let kind = cfg.kind;
        let inner: Box<dyn Provider> = match kind {
            ProviderKind::Anthropic => Box::new(AnthropicProvider::new(cfg, client)?),
            ProviderKind::Gemini => Box::new(GeminiProvider::new(cfg, client)?),
            ProviderKind::AzureOpenAi => Box::new(AzureProvider::new(cfg, client)?),
            other => return Err(ProviderError::unsupported(other)),
        };
        Ok(NativeProvider { kind, inner })
    }
}

impl Provider for NativeProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        self.inner.send(req)
    }
}
