//! The Anthropic adapter: one fixed URI, `x-api-key` and `anthropic-version` headers.

use crate::upstream::{base_url, not_served, post, secret_header, uri};
use crate::{
    BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderKind, UpstreamRequest,
    UpstreamResponse,
};
use http::{HeaderName, HeaderValue, Uri};
use std::sync::Arc;

/// The Anthropic Messages API version sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic upstream.
pub(crate) struct AnthropicProvider {
    messages_uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider").field("host", &self.messages_uri.host()).finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// Prepares the adapter: the URI and headers are built once.
    pub(crate) fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base = base_url(&cfg)?;
        let mut headers: Vec<_> = secret_header(&cfg, HeaderName::from_static("x-api-key"), "")?.into_iter().collect();
        headers.push((HeaderName::from_static("anthropic-version"), HeaderValue::from_static(ANTHROPIC_VERSION)));
        Ok(AnthropicProvider { messages_uri: uri(&cfg, &base, "v1/messages")?, headers, client })
    }
}

impl Provider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = match req.operation {
            Operation::ChatCompletions => Ok(self.messages_uri.clone()),
            Operation::Responses | Operation::Embeddings => Err(not_served()),
        };
        post(&self.client, uri, &self.headers, req)
    }
}
