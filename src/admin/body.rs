//! The admin server's response body: shared bytes handed to hyper in slices (zero-copy: each is
//! a `Bytes` view of the same allocation), so hyper asks for the next slice only once its write
//! buffer has room. A large response's permit lives in the body and is released when the last
//! slice is taken or the connection is dropped; the connection's write clock
//! ([`WriteProgress`]) knows a body is still being written.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

/// Bytes handed to hyper at a time.
const SLICE: usize = 16 * 1024;

/// Whether a connection's current response still has body left to hand to hyper: the write
/// deadline stays armed until it has none and hyper has flushed.
#[derive(Debug, Default)]
pub(super) struct WriteProgress {
    body_open: AtomicBool,
}

impl WriteProgress {
    pub(super) fn body_open(&self) -> bool {
        self.body_open.load(Ordering::Acquire)
    }

    fn set(&self, open: bool) {
        self.body_open.store(open, Ordering::Release);
    }
}

/// A response body (see the module comment).
#[derive(Debug)]
pub(super) struct Body {
    rest: Bytes,
    permit: Option<OwnedSemaphorePermit>,
    progress: Option<Arc<WriteProgress>>,
}

impl Body {
    /// `data`, shared.
    pub(super) fn new(data: Bytes) -> Body {
        Body { rest: data, permit: None, progress: None }
    }

    /// Holds `permit` until the last byte is handed to hyper.
    pub(super) fn holding(mut self, permit: OwnedSemaphorePermit) -> Body {
        self.permit = Some(permit);
        self
    }

    /// Tells `progress` while it is being written.
    pub(super) fn tracked(mut self, progress: Arc<WriteProgress>) -> Body {
        progress.set(!self.rest.is_empty());
        self.progress = Some(progress);
        self
    }

    fn finish(&mut self) {
        self.permit = None;
        if let Some(progress) = self.progress.take() {
            progress.set(false);
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            this.finish();
            return Poll::Ready(None);
        }
        let slice = this.rest.split_to(this.rest.len().min(SLICE));
        if this.rest.is_empty() {
            this.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn slices_share_the_bytes_and_release_the_permit_and_progress_at_the_end() {
        let data = Bytes::from(vec![7u8; SLICE * 2 + 5]);
        let permits = Arc::new(Semaphore::new(1));
        let progress = Arc::new(WriteProgress::default());
        let permit = permits.clone().try_acquire_owned().expect("free");
        let mut body = Body::new(data.clone()).holding(permit).tracked(progress.clone());
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(data.len() as u64));
        assert!(progress.body_open());
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.expect("infallible").into_data().expect("data");
            // A view of the same allocation, not a copy.
            assert!(data.as_ptr_range().contains(&chunk.as_ptr()));
            sizes.push(chunk.len());
            if sizes.len() < 3 {
                assert_eq!(permits.available_permits(), 0, "released before the last slice");
            }
        }
        assert_eq!(sizes, [SLICE, SLICE, 5]);
        assert_eq!(permits.available_permits(), 1);
        assert!(!progress.body_open());
    }

    #[test]
    fn a_dropped_body_releases_its_permit() {
        let permits = Arc::new(Semaphore::new(1));
        let progress = Arc::new(WriteProgress::default());
        let body = Body::new(Bytes::from_static(b"abc"))
            .holding(permits.clone().try_acquire_owned().expect("free"))
            .tracked(progress.clone());
        drop(body);
        assert_eq!(permits.available_permits(), 1);
        assert!(!progress.body_open());
    }
}
