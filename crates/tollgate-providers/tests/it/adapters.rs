//! Every adapter's I/O against a tiny local HTTP server: the URL each kind calls, the
//! headers it sends, and that the credential travels only in its own header (never in
//! a URL, an error or a `Debug` print).

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tollgate_core::ProviderId;
use tollgate_providers::{
    ApiKey, ClientConfig, HttpClient, Operation, ProviderConfig, ProviderErrorKind, ProviderKind, UpstreamRequest,
    build_provider,
};

const SECRET: &str = "sk-upstream-SECRET-4242";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A server that records every request and answers `{"ok":true}` (or an SSE body when
/// asked for a stream).
async fn server() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let stream = parts.headers.get("accept").is_some_and(|v| v == "text/event-stream");
                        log.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            path_and_query: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: parts.headers,
                            body,
                        });
                        let (ct, answer) = if stream {
                            ("text/event-stream", "data: {\"x\":1}\n\n")
                        } else {
                            ("application/json", "{\"ok\":true}")
                        };
                        let resp = http::Response::builder()
                            .header("content-type", ct)
                            .body(Full::new(Bytes::from_static(answer.as_bytes())))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn config(kind: ProviderKind, base_url: &str, extra: serde_json::Value) -> Arc<ProviderConfig> {
    Arc::new(ProviderConfig {
        id: ProviderId::new("prov_test"),
        name: "test".into(),
        kind,
        base_url: base_url.into(),
        api_key: ApiKey::new(SECRET),
        rpm: None,
        tpm: None,
        priority: 0,
        extra,
    })
}

fn client() -> HttpClient {
    HttpClient::new(ClientConfig::default()).unwrap()
}

fn request(operation: Operation, model: &str, stream: bool) -> UpstreamRequest {
    UpstreamRequest {
        operation,
        body: Bytes::from_static(br#"{"model":"x","messages":[]}"#),
        upstream_model: model.into(),
        stream,
    }
}

/// Sends one request through the kind's adapter and returns what the server saw.
async fn send(cfg: Arc<ProviderConfig>, req: UpstreamRequest) -> Seen {
    let (base, seen) = server().await;
    let cfg = Arc::new(ProviderConfig { base_url: format!("{base}{}", cfg.base_url).into(), ..(*cfg).clone() });
    let provider = build_provider(cfg, &client()).unwrap();
    let body = req.body.clone();
    let resp = provider.send(req).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    let _ = resp.body.collect().await.unwrap();
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, body, "the body is sent as given");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(!got.path_and_query.contains(SECRET), "a credential never goes in a URL: {}", got.path_and_query);
    got
}

/// The headers that carry `SECRET`, by name.
fn secret_headers(seen: &Seen) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(_, v)| v.to_str().is_ok_and(|v| v.contains(SECRET)))
        .map(|(k, _)| k.to_string())
        .collect()
}

#[tokio::test]
async fn openai_and_compatible_send_a_bearer_token_to_their_base_url() {
    for kind in [ProviderKind::OpenAi, ProviderKind::OpenAiCompatible] {
        for (op, path) in [
            (Operation::ChatCompletions, "/v1/chat/completions"),
            (Operation::Responses, "/v1/responses"),
            (Operation::Embeddings, "/v1/embeddings"),
        ] {
            let seen = send(config(kind, "/v1/", serde_json::Value::Null), request(op, "gpt-4o", false)).await;
            assert_eq!(seen.path_and_query, path, "{kind}");
            assert_eq!(seen.header("authorization"), Some(format!("Bearer {SECRET}").as_str()));
            assert_eq!(secret_headers(&seen), ["authorization"]);
            assert_eq!(seen.header("accept"), Some("application/json"));
        }
    }
    let seen = send(
        config(ProviderKind::OpenAi, "/v1", serde_json::Value::Null),
        request(Operation::ChatCompletions, "m", true),
    )
    .await;
    assert_eq!(seen.header("accept"), Some("text/event-stream"));
}

#[tokio::test]
async fn anthropic_sends_x_api_key_and_the_api_version() {
    let seen = send(
        config(ProviderKind::Anthropic, "", serde_json::Value::Null),
        request(Operation::ChatCompletions, "claude-sonnet-4-5", true),
    )
    .await;
    assert_eq!(seen.path_and_query, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(SECRET));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("accept"), Some("text/event-stream"));
    assert_eq!(secret_headers(&seen), ["x-api-key"], "only x-api-key carries the credential");
}

#[tokio::test]
async fn gemini_puts_the_model_in_the_path_and_the_key_in_a_header() {
    let cfg = config(ProviderKind::Gemini, "/", serde_json::Value::Null);
    let seen = send(cfg.clone(), request(Operation::ChatCompletions, "gemini-2.5-flash", false)).await;
    assert_eq!(seen.path_and_query, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.header("x-goog-api-key"), Some(SECRET));
    assert_eq!(secret_headers(&seen), ["x-goog-api-key"]);
    let seen = send(cfg, request(Operation::ChatCompletions, "models/gemini-2.5-pro", true)).await;
    assert_eq!(seen.path_and_query, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
    assert!(!seen.path_and_query.contains("key="), "the key is never a query parameter");
}

#[tokio::test]
async fn azure_calls_the_deployment_with_api_version_and_api_key() {
    let cfg = config(ProviderKind::AzureOpenAi, "", serde_json::Value::Null);
    let seen = send(cfg.clone(), request(Operation::ChatCompletions, "gpt4o-prod", false)).await;
    assert_eq!(seen.path_and_query, "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21");
    assert_eq!(seen.header("api-key"), Some(SECRET));
    assert_eq!(secret_headers(&seen), ["api-key"]);
    let seen = send(cfg.clone(), request(Operation::Embeddings, "embed-prod", false)).await;
    assert_eq!(seen.path_and_query, "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21");
    let seen = send(cfg, request(Operation::Responses, "gpt4o-prod", false)).await;
    assert_eq!(seen.path_and_query, "/openai/v1/responses");

    let pinned = config(ProviderKind::AzureOpenAi, "", serde_json::json!({"api_version": "2025-04-01-preview"}));
    let seen = send(pinned, request(Operation::ChatCompletions, "d", false)).await;
    assert_eq!(seen.path_and_query, "/openai/deployments/d/chat/completions?api-version=2025-04-01-preview");
}

#[tokio::test]
async fn a_model_name_that_would_change_the_url_is_refused_before_sending() {
    let (base, seen) = server().await;
    for kind in [ProviderKind::Gemini, ProviderKind::AzureOpenAi] {
        let provider = build_provider(config(kind, &base, serde_json::Value::Null), &client()).unwrap();
        for model in ["../admin", "..", "a/b", "a?key=1", "a#b", "a b", ""] {
            let err = provider.send(request(Operation::ChatCompletions, model, false)).await.unwrap_err();
            assert_eq!(err.kind, ProviderErrorKind::Config, "{kind} {model:?}");
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn operations_a_kind_does_not_serve_are_refused() {
    let (base, _) = server().await;
    for kind in [ProviderKind::Anthropic, ProviderKind::Gemini] {
        assert!(!kind.serves(Operation::Responses) && !kind.serves(Operation::Embeddings));
        let provider = build_provider(config(kind, &base, serde_json::Value::Null), &client()).unwrap();
        for op in [Operation::Responses, Operation::Embeddings] {
            let err = provider.send(request(op, "m", false)).await.unwrap_err();
            assert_eq!(err.kind, ProviderErrorKind::Config);
        }
    }
    for kind in ProviderKind::ALL {
        assert!(kind.is_supported(), "{kind}");
        assert!(kind.serves(Operation::ChatCompletions));
    }
}

#[tokio::test]
async fn credentials_never_reach_debug_output_or_errors() {
    for kind in ProviderKind::ALL.iter().copied() {
        let cfg = config(kind, "http://127.0.0.1:1", serde_json::json!({"api_version": "2024-10-21"}));
        assert!(!format!("{cfg:?}").contains(SECRET), "{kind}: config Debug");
        let provider = build_provider(cfg, &client()).unwrap();
        if kind == ProviderKind::Mock {
            continue;
        }
        // Port 1 refuses: the error names no credential.
        let err = provider.send(request(Operation::ChatCompletions, "m", false)).await.unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Connect, "{kind}");
        assert!(!format!("{err:?} {err}").contains(SECRET), "{kind}: error");
    }
    let openai = tollgate_providers::openai::OpenAiProvider::new(
        config(ProviderKind::OpenAi, "http://h/v1", serde_json::Value::Null),
        client(),
    )
    .unwrap();
    let native = tollgate_providers::native::NativeProvider::new(
        config(ProviderKind::Anthropic, "http://h", serde_json::Value::Null),
        client(),
    )
    .unwrap();
    for debug in [format!("{openai:?}"), format!("{native:?}")] {
        assert!(!debug.contains(SECRET), "{debug}");
    }
    // A credential that cannot be a header value is refused without echoing it.
    let bad = config(ProviderKind::Anthropic, "http://h", serde_json::Value::Null);
    let bad = Arc::new(ProviderConfig { api_key: ApiKey::new("sk-bad\nSECRET-4242"), ..(*bad).clone() });
    let err = build_provider(bad, &client()).err().unwrap();
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[tokio::test]
async fn bad_configurations_are_refused_at_build_time() {
    let bad_url = config(ProviderKind::OpenAi, "not a url", serde_json::Value::Null);
    assert_eq!(build_provider(bad_url, &client()).err().unwrap().kind, ProviderErrorKind::Config);
    let bad_version = config(ProviderKind::AzureOpenAi, "http://h", serde_json::json!({"api_version": "x&key=1"}));
    assert_eq!(build_provider(bad_version, &client()).err().unwrap().kind, ProviderErrorKind::Config);
}
