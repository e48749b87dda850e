//! The IO wrapper that closes a connection whose phase outlives its deadline.
//!
//! It acts on reads only: a server with nothing in flight is always waiting to read (the
//! next head, the next HTTP/2 frame), so a deadline on the pending read bounds exactly the
//! phases where the peer owes us something and nothing is being served.

use crate::conn::{ConnHandle, ConnState};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// An accepted connection under its listener's deadlines; it holds one permit of the
/// listener's connection cap until it is dropped.
#[derive(Debug)]
pub struct EdgeIo<T> {
    inner: T,
    state: Arc<ConnState>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// Since when writes have made no progress (the peer reads nothing), and its timer.
    write_stalled: Option<(Instant, Pin<Box<Sleep>>)>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T> EdgeIo<T> {
    pub(crate) fn new(
        inner: T,
        state: ConnState,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
        permit: Option<OwnedSemaphorePermit>,
    ) -> EdgeIo<T> {
        EdgeIo {
            inner,
            state: Arc::new(state),
            peer: addrs.0,
            local: addrs.1,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            armed: None,
            write_stalled: None,
            _permit: permit,
        }
    }

    /// The handle its service marks requests with.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle { state: self.state.clone() }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The local address the connection was accepted on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Whether the connection is past its deadline; arms the timer for the next one.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        self.state.park_reader(cx.waker());
        loop {
            let (at, why) = self.state.deadline()?;
            if Instant::now() >= at {
                return Some(why);
            }
            if self.armed != Some(at) {
                self.timer.as_mut().reset(at);
                self.armed = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(r);
        }
        match this.expired(cx) {
            Some(why) => {
                tracing::debug!(peer = ?this.peer, reason = why, "connection closed");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            None => Poll::Pending,
        }
    }
}

impl<T> EdgeIo<T> {
    /// A write's outcome, with a peer that has read nothing for the idle timeout failing
    /// it: a response nobody reads holds nothing for long either.
    fn write_progress<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.write_stalled = None;
            return polled;
        }
        let limit = self.state.idle_timeout();
        let (since, timer) = self.write_stalled.get_or_insert_with(|| {
            let now = Instant::now();
            (now, Box::pin(tokio::time::sleep_until(now + limit)))
        });
        if Instant::now() >= *since + limit || timer.as_mut().poll(cx).is_ready() {
            tracing::debug!(peer = ?self.peer, "connection closed: the peer read nothing for the idle timeout");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")));
        }
        Poll::Pending
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_progress(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.write_progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn wrapped(io: tokio::io::DuplexStream) -> EdgeIo<tokio::io::DuplexStream> {
        EdgeIo::new(io, ConnState::new(Duration::from_secs(5), Duration::from_secs(30)), (None, None), None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_at_the_header_deadline() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut io = wrapped(ours);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_fails_writes_after_the_idle_timeout() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut io = wrapped(ours);
        let _busy = io.handle().begin();
        let started = Instant::now();
        let mut result = Ok(());
        for _ in 0..100 {
            result = io.write_all(&[b'x'; 64]).await;
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_kept_and_cut_once_idle() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut io = wrapped(ours);
        let handle = io.handle();
        let guard = handle.begin();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let first = io.read(&mut buf).await.map_err(|e| e.kind());
            let second = io.read(&mut buf).await.map_err(|e| e.kind());
            (first, second)
        });
        // A request in flight for far longer than any deadline: the connection stays.
        tokio::time::sleep(Duration::from_secs(600)).await;
        peer.write_all(b"x").await.ok();
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(guard);
        let idle = Instant::now();
        let (first, second) = reader.await.ok().unwrap_or((Err(io::ErrorKind::Other), Err(io::ErrorKind::Other)));
        assert_eq!(first, Ok(1));
        assert_eq!(second, Err(io::ErrorKind::TimedOut));
        assert_eq!(idle.elapsed(), Duration::from_secs(30));
    }
}
