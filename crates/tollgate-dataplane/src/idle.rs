//! The stream idle timeout: an upstream body that goes silent for longer than the
//! configured bound ends with an `IdleTimeout` error instead of holding the caller, the
//! connection and the reservation forever.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tollgate_providers::{ProviderError, ProviderErrorKind, ResponseBody};

/// An upstream body with an idle deadline that moves forward on every frame.
pub(crate) struct IdleTimeout {
    inner: ResponseBody,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    done: bool,
}

impl IdleTimeout {
    pub(crate) fn new(inner: ResponseBody, idle: Duration) -> Self {
        IdleTimeout { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)), done: false }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = ProviderError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let deadline = Instant::now() + this.idle;
            this.sleep.as_mut().reset(deadline);
            return Poll::Ready(frame);
        }
        ready!(this.sleep.as_mut().poll(cx));
        this.done = true;
        Poll::Ready(Some(Err(ProviderError::new(
            ProviderErrorKind::IdleTimeout,
            format!("upstream sent nothing for {}s", this.idle.as_secs_f64()),
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_silent_upstream_ends_with_an_idle_timeout_and_a_talkative_one_does_not() {
        let talkative = futures_util::stream::unfold(0u8, |i| async move {
            if i == 5 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            Some((Ok::<_, ProviderError>(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        let body = IdleTimeout::new(BodyExt::boxed(StreamBody::new(talkative)), Duration::from_millis(500));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 5, "gaps under the bound never time out");

        let silent = futures_util::StreamExt::chain(
            futures_util::stream::once(async { Ok::<_, ProviderError>(Frame::data(Bytes::from_static(b"x"))) }),
            futures_util::stream::pending(),
        );
        let mut body = IdleTimeout::new(BodyExt::boxed(StreamBody::new(silent)), Duration::from_millis(100));
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::IdleTimeout);
        assert!(body.frame().await.is_none());
    }
}
