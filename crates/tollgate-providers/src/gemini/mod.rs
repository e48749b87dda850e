//! Google Gemini: `POST {base}/v1beta/models/{model}:generateContent` (or
//! `:streamGenerateContent?alt=sse`), `x-goog-api-key`. Callers speak OpenAI chat or
//! Anthropic Messages to it: requests ([`request`](self)), whole answers and usage
//! ([`response`](self)) and streams ([`stream`](self)) translate through OpenAI chat.

mod adapter;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

use crate::registry::Spec;
use crate::{Dialect, HttpClient, Provider, ProviderConfig, ProviderError};
use std::sync::Arc;

pub(crate) use adapter::GeminiProvider;

/// Google Gemini.
pub(crate) const SPEC: Spec = Spec {
    chat_dialect: Dialect::Gemini,
    default_base_url: Some("https://generativelanguage.googleapis.com"),
    responses_and_embeddings: false,
    chat_cap_field: crate::head::CapField::MaxTokens,
    build,
};

fn build(cfg: Arc<ProviderConfig>, client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(GeminiProvider::new(cfg, client.clone())?))
}
