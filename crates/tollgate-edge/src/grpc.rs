//! tonic over an [`EdgeListener`]: the connection's handle reaches each request through
//! tonic's connect info, and [`TrackLayer`] marks the request in flight until its
//! response stream ends — so a long Watch stream is never taken for an idle connection.

use crate::BoxError;
use crate::conn::{ConnHandle, Tracked};
use crate::io::EdgeIo;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// What tonic learns of a connection: its addresses and its handle.
#[derive(Debug, Clone)]
pub struct EdgeConnectInfo {
    /// Local and peer addresses, as tonic's own TCP incoming reports them.
    pub tcp: TcpConnectInfo,
    /// The connection's handle.
    pub handle: ConnHandle,
}

impl Connected for EdgeIo<TcpStream> {
    type ConnectInfo = EdgeConnectInfo;

    fn connect_info(&self) -> EdgeConnectInfo {
        EdgeConnectInfo {
            tcp: TcpConnectInfo { local_addr: self.local_addr(), remote_addr: self.peer_addr() },
            handle: self.handle(),
        }
    }
}

/// The tower layer that marks each gRPC call in flight on its connection (add it with
/// `Server::builder().layer(TrackLayer)`). The addresses go in the request's extensions
/// as tonic's own [`TcpConnectInfo`] too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = TrackService<S>;

    fn layer(&self, inner: S) -> TrackService<S> {
        TrackService { inner }
    }
}

/// The service of [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct TrackService<S> {
    inner: S,
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for TrackService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<Tracked<ResB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let info = req.extensions().get::<EdgeConnectInfo>().cloned();
        let guard = info.map(|info| {
            req.extensions_mut().insert(info.tcp);
            info.handle.begin()
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| match guard {
                Some(guard) => Tracked::new(body, guard),
                None => Tracked::untracked(body),
            }))
        })
    }
}
