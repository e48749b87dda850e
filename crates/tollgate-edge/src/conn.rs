//! The state one connection shares between its IO (which enforces the deadlines) and
//! its service (which says when requests begin and end).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// What the connection is doing, as its service reports it.
#[derive(Debug)]
struct Phase {
    /// A request head has arrived on this connection.
    started: bool,
    /// Requests whose response has not been sent in full.
    inflight: usize,
    /// When the last request in flight ended (or the connection opened).
    idle_since: Instant,
}

#[derive(Debug)]
pub(crate) struct ConnState {
    opened: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Mutex<Phase>,
    /// The IO's pending read, woken when the phase changes so it re-arms its deadline.
    reader: Mutex<Option<Waker>>,
}

impl ConnState {
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> ConnState {
        let now = Instant::now();
        ConnState {
            opened: now,
            header_timeout,
            idle_timeout,
            phase: Mutex::new(Phase { started: false, inflight: 0, idle_since: now }),
            reader: Mutex::new(None),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection must be closed unless its phase changes first, and why.
    pub(crate) fn deadline(&self) -> Option<(Instant, &'static str)> {
        let p = self.phase();
        if !p.started {
            Some((self.opened + self.header_timeout, "no complete request head within the header timeout"))
        } else if p.inflight == 0 {
            Some((p.idle_since + self.idle_timeout, "idle past the idle timeout"))
        } else {
            None
        }
    }

    /// How long a connection may make no progress before it is closed.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Remembers the waker of a pending read.
    pub(crate) fn park_reader(&self, waker: &Waker) {
        let mut slot = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake_reader(&self) {
        if let Some(w) = self.reader.lock().unwrap_or_else(PoisonError::into_inner).take() {
            w.wake();
        }
    }
}

/// A connection as its service sees it: marks requests in flight so the connection is
/// neither cut mid-request nor kept while idle.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub(crate) state: Arc<ConnState>,
}

impl ConnHandle {
    /// A request has arrived: the connection is busy until the returned guard is dropped
    /// (keep it with the response body, e.g. with [`Tracked`]).
    pub fn begin(&self) -> RequestGuard {
        {
            let mut p = self.state.phase();
            p.started = true;
            p.inflight += 1;
        }
        RequestGuard { state: self.state.clone() }
    }
}

/// A request in flight on its connection; dropping it ends the request.
#[derive(Debug)]
pub struct RequestGuard {
    state: Arc<ConnState>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let idle = {
            let mut p = self.state.phase();
            p.inflight = p.inflight.saturating_sub(1);
            if p.inflight == 0 {
                p.idle_since = Instant::now();
            }
            p.inflight == 0
        };
        if idle {
            self.state.wake_reader();
        }
    }
}

/// A response body that keeps its request in flight until it is sent in full or
/// dropped.
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    guard: Option<RequestGuard>,
}

impl<B> Tracked<B> {
    /// `body`, keeping `guard` alive as long as it is.
    pub fn new(body: B, guard: RequestGuard) -> Tracked<B> {
        Tracked { inner: body, guard: Some(guard) }
    }

    /// `body` of a request no connection tracks.
    pub fn untracked(body: B) -> Tracked<B> {
        Tracked { inner: body, guard: None }
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_has_a_head_deadline_then_none_while_busy_then_an_idle_one() {
        let state = Arc::new(ConnState::new(Duration::from_secs(5), Duration::from_secs(60)));
        let opened = Instant::now();
        assert_eq!(state.deadline().map(|d| d.0), Some(opened + Duration::from_secs(5)));
        let handle = ConnHandle { state: state.clone() };
        let (a, b) = (handle.begin(), handle.begin());
        assert_eq!(state.deadline(), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(a);
        assert_eq!(state.deadline(), None, "one request is still in flight");
        drop(b);
        let idle = Instant::now();
        assert_eq!(state.deadline().map(|d| d.0), Some(idle + Duration::from_secs(60)));
    }
}
