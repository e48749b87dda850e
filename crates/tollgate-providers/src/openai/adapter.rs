//! The OpenAI adapter: `{base}/chat/completions`, `{base}/responses`, `{base}/embeddings`,
//! the credential as `Authorization: Bearer`.

use crate::upstream::{config_error, post, secret_header};
use crate::{
    BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderKind, UpstreamRequest,
    UpstreamResponse,
};
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Uri};
use std::sync::Arc;

/// The adapter for api.openai.com and any OpenAI-compatible base URL.
pub struct OpenAiProvider {
    kind: ProviderKind,
    chat_uri: Uri,
    responses_uri: Uri,
    embeddings_uri: Uri,
    auth: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential header is never printed, not even marked sensitive.
        f.debug_struct("OpenAiProvider")
            .field("kind", &self.kind)
            .field("host", &self.chat_uri.host())
            .field("has_credential", &!self.auth.is_empty())
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Prepares the adapter: URLs and the credential header are built once.
    pub fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base = cfg.base_url.trim_end_matches('/');
        let uri = |path: &str| -> Result<Uri, ProviderError> {
            format!("{base}/{path}").parse().map_err(|_| config_error(&cfg, "invalid base_url"))
        };
        Ok(OpenAiProvider {
            kind: cfg.kind,
            chat_uri: uri("chat/completions")?,
            responses_uri: uri("responses")?,
            embeddings_uri: uri("embeddings")?,
            auth: secret_header(&cfg, AUTHORIZATION, "Bearer ")?.into_iter().collect(),
            client,
        })
    }
}

impl Provider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = match req.operation {
            Operation::ChatCompletions => self.chat_uri.clone(),
            Operation::Responses => self.responses_uri.clone(),
            Operation::Embeddings => self.embeddings_uri.clone(),
        };
        post(&self.client, Ok(uri), &self.auth, req)
    }
}
