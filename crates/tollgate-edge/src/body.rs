//! The request body wrapper: a deadline on the whole body and a minimum rate.

use crate::BoxError;
use crate::limits::BodyRules;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a request body was given up on.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body did not arrive in full within the deadline.
    #[error("request body not received within {}s", deadline.as_secs())]
    Deadline {
        /// The body deadline.
        deadline: Duration,
    },
    /// The body arrived slower than the minimum rate.
    #[error("request body arrived slower than {min_rate} bytes/s")]
    TooSlow {
        /// The minimum rate, bytes per second.
        min_rate: u64,
    },
    /// Reading the body failed.
    #[error("request body could not be read")]
    Read(#[source] BoxError),
}

/// A request body read under [`BodyRules`], timed from when it was wrapped (when its
/// head arrived). Past a rule its next frame is an error, and the caller stops reading.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    rules: BodyRules,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl<B> GuardedBody<B> {
    /// `body` under the [`BodyRules`] its listener put in the request's `extensions`
    /// (the default limits' when there are none).
    pub fn from_extensions(body: B, extensions: &http::Extensions) -> GuardedBody<B> {
        let rules = extensions.get::<BodyRules>().copied();
        GuardedBody::new(body, rules.unwrap_or_else(|| crate::ListenerLimits::default().body_rules()))
    }

    /// `body` under `rules`.
    pub fn new(body: B, rules: BodyRules) -> GuardedBody<B> {
        GuardedBody { inner: body, rules, started: Instant::now(), received: 0, timer: None, armed: None }
    }

    /// The earliest moment a rule can be broken with what has arrived so far.
    fn next_check(&self) -> Instant {
        let deadline = self.started + self.rules.deadline;
        if self.rules.min_rate == 0 {
            return deadline;
        }
        // received >= min_rate * (t - started - grace) holds until this moment.
        let covered = Duration::from_secs_f64(self.received as f64 / self.rules.min_rate as f64);
        deadline.min(self.started + self.rules.grace + covered)
    }

    fn broken(&self, now: Instant) -> Option<BodyError> {
        if now >= self.started + self.rules.deadline {
            return Some(BodyError::Deadline { deadline: self.rules.deadline });
        }
        (self.rules.min_rate > 0 && now >= self.next_check())
            .then_some(BodyError::TooSlow { min_rate: self.rules.min_rate })
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BodyError::Read(e.into())))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            if let Some(e) = this.broken(Instant::now()) {
                return Poll::Ready(Some(Err(e)));
            }
            let at = this.next_check();
            let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if this.armed != Some(at) {
                timer.as_mut().reset(at);
                this.armed = Some(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
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
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    type Chunks = StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

    fn body(rules: BodyRules) -> (tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>, GuardedBody<Chunks>) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (tx, GuardedBody::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)), rules))
    }

    const RULES: BodyRules =
        BodyRules { deadline: Duration::from_secs(60), min_rate: 1024, grace: Duration::from_secs(10) };

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_fails_once_the_grace_is_over() {
        let (_tx, b) = body(RULES);
        let started = Instant::now();
        let err = b.collect().await.err();
        assert!(matches!(err, Some(BodyError::TooSlow { min_rate: 1024 })), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_one_byte_a_second_fails_and_a_prompt_one_passes() {
        let (tx, b) = body(RULES);
        tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert!(matches!(b.collect().await.err(), Some(BodyError::TooSlow { .. })));

        let (tx, b) = body(RULES);
        tokio::spawn(async move {
            for _ in 0..20 {
                let _ = tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 4096])))).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert_eq!(b.collect().await.map(|c| c.to_bytes().len()).ok(), Some(20 * 4096));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_rate_the_deadline_still_holds() {
        let (_tx, b) = body(BodyRules { min_rate: 0, ..RULES });
        let started = Instant::now();
        assert!(matches!(b.collect().await.err(), Some(BodyError::Deadline { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }
}
