//! The accept loop with its connection cap.

use crate::conn::ConnState;
use crate::io::EdgeIo;
use crate::limits::ListenerLimits;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// A listening socket that hands out connections under its [`ListenerLimits`]: at most
/// `max_connections` open at once; one above the cap is accepted and closed at once (the
/// peer reads EOF), so nothing queues and file descriptors stay bounded.
#[derive(Debug)]
pub struct EdgeListener {
    listener: TcpListener,
    limits: ListenerLimits,
    permits: Arc<Semaphore>,
    name: &'static str,
    refused: u64,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl EdgeListener {
    /// `listener` under `limits`; `name` labels its log lines (`data`, `admin`, `grpc`).
    pub fn new(listener: TcpListener, limits: ListenerLimits, name: &'static str) -> EdgeListener {
        EdgeListener {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS))),
            limits,
            name,
            refused: 0,
            backoff: None,
        }
    }

    /// The listener's limits.
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// Connections refused at the cap so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The next connection under the cap.
    pub async fn accept(&mut self) -> EdgeIo<TcpStream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection under the cap, closing those above it.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<EdgeIo<TcpStream>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, peer)) => {
                    let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                        self.refused += 1;
                        if self.refused.is_power_of_two() {
                            tracing::warn!(
                                listener = self.name,
                                max_connections = self.limits.max_connections,
                                refused = self.refused,
                                "connection refused: the listener is at its connection cap"
                            );
                        }
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    let state = ConnState::new(self.limits.header_timeout, self.limits.idle_timeout);
                    return Poll::Ready(EdgeIo::new(stream, state, (Some(peer), local), Some(permit)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                }
            }
        }
    }
}

impl From<TcpListener> for EdgeListener {
    /// `listener` under the default limits ([`ListenerLimits::DATA_PLANE`]).
    fn from(listener: TcpListener) -> EdgeListener {
        EdgeListener::new(listener, ListenerLimits::default(), "http")
    }
}

impl tokio_stream::Stream for EdgeListener {
    type Item = Result<EdgeIo<TcpStream>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx).map(|io| Some(Ok(io)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn connections_above_the_cap_are_closed_at_once() {
        let tcp = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = tcp.local_addr().ok();
        let limits = ListenerLimits { max_connections: 2, ..ListenerLimits::DATA_PLANE };
        let mut listener = EdgeListener::new(tcp, limits, "test");
        let held = tokio::spawn(async move {
            let a = listener.accept().await;
            let b = listener.accept().await;
            // Keep accepting (and refusing) while the two are held.
            let c = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
            (a, b, c.is_ok(), listener.refused())
        });
        let mut socks = Vec::new();
        for _ in 0..3 {
            if let Some(addr) = addr
                && let Ok(s) = TcpStream::connect(addr).await
            {
                socks.push(s);
            }
        }
        assert_eq!(socks.len(), 3);
        let mut buf = [0u8; 1];
        let third = tokio::time::timeout(Duration::from_secs(5), socks[2].read(&mut buf)).await;
        assert!(matches!(third, Ok(Ok(0)) | Ok(Err(_))), "the third connection is closed: {third:?}");
        let (_a, _b, third_served, refused) = match held.await {
            Ok(r) => r,
            Err(e) => panic!("accept task: {e}"),
        };
        assert!(!third_served);
        assert_eq!(refused, 1);
    }
}
