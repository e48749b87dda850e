//! The pooled upstream HTTP client shared by every adapter.

use crate::{ProviderError, ProviderErrorKind, ResponseBody};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// Bounds of the upstream client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the response head arrives.
    pub request_timeout: Duration,
    /// How long pooled idle connections are kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Certificate authorities trusted besides the public web PKI (webpki roots): for
    /// upstreams behind a private CA, e.g. a self-hosted model server.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            extra_roots: Vec::new(),
        }
    }
}

/// A pooled HTTP/1.1 + HTTP/2 client with rustls (webpki roots, plus any extra CA);
/// HTTP/2 is used when a TLS upstream offers it (ALPN). Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cfg: Arc<ClientConfig>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("cfg", &self.cfg).finish()
    }
}

impl HttpClient {
    /// Builds the client.
    pub fn new(cfg: ClientConfig) -> Result<Self, ProviderError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        let tls_error =
            |e: &dyn std::fmt::Display| ProviderError::new(ProviderErrorKind::Config, format!("TLS setup failed: {e}"));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if cfg.extra_roots.is_empty() {
            builder
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| tls_error(&e))?
        } else {
            let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            for cert in &cfg.extra_roots {
                roots.add(cert.clone()).map_err(|e| tls_error(&e))?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_error(&e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            // ALPN (h2, http/1.1) is set by the builder below.
            builder.with_tls_config(tls)
        };
        let https = builder.https_or_http().enable_http1().enable_http2().wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .build(https);
        Ok(HttpClient { inner, cfg: Arc::new(cfg) })
    }

    /// The configured bounds.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Sends a request; resolves when the response head arrives (or the request
    /// timeout passes). The body streams afterwards.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<http::Response<ResponseBody>, ProviderError> {
        let fut = self.inner.request(req);
        let resp = match tokio::time::timeout(self.cfg.request_timeout, fut).await {
            Err(_) => {
                return Err(ProviderError::new(ProviderErrorKind::Timeout, "upstream did not answer in time"));
            }
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(resp)) => resp,
        };
        Ok(resp.map(|b| {
            b.map_err(|e| ProviderError::new(ProviderErrorKind::Io, format!("upstream connection broke: {e}"))).boxed()
        }))
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ProviderError {
    if e.is_connect() {
        ProviderError::new(ProviderErrorKind::Connect, "could not connect to upstream")
    } else {
        ProviderError::new(ProviderErrorKind::Io, "upstream connection failed")
    }
}
