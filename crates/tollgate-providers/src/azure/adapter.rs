//! The Azure OpenAI adapter: the deployment in the path, the API version in the query
//! (from `extra.api_version`), the credential in `api-key`; Responses go to the v1 API.

use crate::upstream::{base_url, config_error, path_segment, post, secret_header};
use crate::{
    BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderErrorKind, ProviderKind,
    UpstreamRequest, UpstreamResponse,
};
use http::{HeaderName, HeaderValue, Uri};
use std::sync::Arc;

/// The Azure OpenAI API version used when the provider's `extra.api_version` is unset.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// An Azure OpenAI resource.
pub(crate) struct AzureProvider {
    base: Arc<str>,
    version: Arc<str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("base", &self.base)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// Prepares the adapter: the credential header and API version are checked once.
    pub(crate) fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base = base_url(&cfg)?;
        let headers = secret_header(&cfg, HeaderName::from_static("api-key"), "")?.into_iter().collect();
        let version = cfg.extra.get("api_version").and_then(|v| v.as_str()).unwrap_or(AZURE_API_VERSION);
        if !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(config_error(&cfg, "extra.api_version must be like 2024-10-21"));
        }
        Ok(AzureProvider { base, version: Arc::from(version), headers, client })
    }

    /// The URI for one request: the deployment (the upstream model) is in the path.
    fn uri(&self, req: &UpstreamRequest) -> Result<Uri, ProviderError> {
        let deployment = path_segment(&req.upstream_model)?;
        let (base, version) = (&self.base, &self.version);
        let text = match req.operation {
            Operation::ChatCompletions => {
                format!("{base}/openai/deployments/{deployment}/chat/completions?api-version={version}")
            }
            Operation::Embeddings => format!("{base}/openai/deployments/{deployment}/embeddings?api-version={version}"),
            Operation::Responses => format!("{base}/openai/v1/responses"),
        };
        text.parse().map_err(|_| ProviderError::new(ProviderErrorKind::Config, "could not build the upstream URL"))
    }
}

impl Provider for AzureProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AzureOpenAi
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = self.uri(&req);
        post(&self.client, uri, &self.headers, req)
    }
}
