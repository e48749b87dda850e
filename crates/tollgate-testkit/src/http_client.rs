//! A minimal HTTP/1.1 client for tests: JSON in, status + headers + JSON out.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response as tests look at it.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request and returns the response head and its unread body.
async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (http::response::Parts, hyper::body::Incoming) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).expect("valid request");
    let resp = client.request(req).await.unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
    resp.into_parts()
}

/// Sends one request. `headers` are `(name, value)` pairs.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> TestResponse {
    let (parts, body) = request(method, url, headers, body.into()).await;
    let body = body.collect().await.expect("read body").to_bytes();
    TestResponse { status: parts.status, headers: parts.headers, body }
}

/// Sends one request, returning why it failed instead of panicking: for requests a test
/// expects some of to fail (a server killed mid-load).
pub async fn try_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<TestResponse, String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).map_err(|e| e.to_string())?;
    let (parts, body) = client.request(req).await.map_err(|e| e.to_string())?.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(TestResponse { status: parts.status, headers: parts.headers, body })
}

/// Sends one request whose body may break off (a stream the server cuts): returns what
/// arrived, and whether the body ended cleanly.
pub async fn send_cut(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (TestResponse, bool) {
    let (parts, mut incoming) = request(method, url, headers, body.into()).await;
    let mut got = Vec::new();
    let complete = loop {
        match incoming.frame().await {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                }
            }
        }
    };
    (TestResponse { status: parts.status, headers: parts.headers, body: Bytes::from(got) }, complete)
}

/// POSTs a JSON value with a bearer token (when given).
pub async fn post_json(url: &str, bearer: Option<&str>, body: &serde_json::Value) -> TestResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(Method::POST, url, &headers, body.to_string()).await
}

/// GETs with a bearer token (when given).
pub async fn get(url: &str, bearer: Option<&str>) -> TestResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(Method::GET, url, &headers, Bytes::new()).await
}
