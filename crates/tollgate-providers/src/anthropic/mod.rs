//! Anthropic: the Messages API (`POST {base}/v1/messages`, `x-api-key`,
//! `anthropic-version`). Callers may speak it too (`/v1/messages`), so translation goes
//! both ways with OpenAI chat: requests ([`request`](self)), whole answers and usage
//! ([`response`](self)), and streams event by event ([`stream`](self)).

mod adapter;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

use crate::registry::Spec;
use crate::{Dialect, HttpClient, Provider, ProviderConfig, ProviderError};
use std::sync::Arc;

pub use adapter::ANTHROPIC_VERSION;
pub(crate) use adapter::AnthropicProvider;

/// The Anthropic Messages API.
pub(crate) const SPEC: Spec = Spec {
    chat_dialect: Dialect::AnthropicMessages,
    default_base_url: Some("https://api.anthropic.com"),
    responses_and_embeddings: false,
    chat_cap_field: crate::head::CapField::MaxTokens,
    build,
};

fn build(cfg: Arc<ProviderConfig>, client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(AnthropicProvider::new(cfg, client.clone())?))
}
