//! Serving a hyper service (HTTP/1.1 and HTTP/2) over an [`EdgeListener`].

use crate::BoxError;
use crate::conn::ConnHandle;
use crate::limits::ListenerLimits;
use crate::listener::EdgeListener;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;

/// A hyper builder for both protocols under `limits`: HTTP/1.1 heads within the header
/// timeout, HTTP/2 keep-alive pings, and heads of at most `max_header_bytes`.
pub fn http_builder(limits: &ListenerLimits, max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections on `listener` and serves each with the service `make` builds for
/// it (mark requests with the [`ConnHandle`]) until `shutdown` resolves. Returns the
/// graceful shutdown of the connections still open: await its `shutdown()` (bounded by
/// the caller's grace) to let them finish.
pub async fn serve_http<M, S, B>(
    mut listener: EdgeListener,
    builder: auto::Builder<TokioExecutor>,
    mut make: M,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown
where
    M: FnMut(ConnHandle) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: HttpServerConnExec<S::Future, B>,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            io = listener.accept() => {
                let svc = make(io.handle());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful
}
