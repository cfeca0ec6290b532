//! Request bodies read with an idle bound: a client that starts a body and then
//! stops sending would otherwise hold its connection, its task and whatever the
//! handler holds (an upload's lock, a buffer) for as long as it likes. Response
//! bodies streamed from blocking readers.

use std::future::Future;
use std::io::{Read, Take};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// How long a client may send nothing while its body is being read.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a body ended early.
#[derive(Debug)]
pub enum BodyError {
    /// The client sent nothing for the idle bound.
    Idle(Duration),
    /// The body could not be read (the connection broke, a framing error).
    Read(axum::Error),
    /// The body is longer than the bound it was read with.
    TooLarge(usize),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Idle(idle) => write!(f, "the client sent nothing for {}s", idle.as_secs()),
            BodyError::Read(err) => write!(f, "the request body could not be read: {err}"),
            BodyError::TooLarge(limit) => write!(f, "the request body exceeds {limit} bytes"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A whole request body of at most `limit` bytes, read with its idle bound (a plain
/// body gets [`BODY_IDLE_TIMEOUT`]).
pub async fn read_whole(body: impl Into<IdleBody>, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body.into(), limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => match err.downcast::<BodyError>() {
            Ok(err) => Err(*err),
            // `Limited`'s only error of its own.
            Err(_) => Err(BodyError::TooLarge(limit)),
        },
    }
}

/// A request body that fails with [`BodyError::Idle`] when no frame arrives for its
/// idle bound. Only time spent waiting on the client counts, not time the handler
/// takes between reads.
pub struct IdleBody {
    inner: axum::body::Body,
    idle: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleBody {
    /// `body` bounded by [`BODY_IDLE_TIMEOUT`].
    pub fn new(body: axum::body::Body) -> Self {
        Self::with_timeout(body, BODY_IDLE_TIMEOUT)
    }

    pub fn with_timeout(body: axum::body::Body, idle: Duration) -> Self {
        Self {
            inner: body,
            idle,
            deadline: None,
        }
    }
}

impl From<axum::body::Body> for IdleBody {
    fn from(body: axum::body::Body) -> Self {
        Self::new(body)
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.deadline = None;
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::Read)));
        }
        let idle = this.idle;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(idle)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that records whether it was read to its end. An HTTP/1.1 response
/// sent before then must close its connection: a client that asked for `100
/// Continue` and got a final answer instead may skip the body (botocore does) and
/// send its next request on the same connection, whose first bytes the server would
/// otherwise take for the rest of this body.
pub struct TrackedBody<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

impl<B: Body> TrackedBody<B> {
    /// `body` and the flag that turns true once it has been read to its end.
    pub fn new(body: B) -> (Self, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
        let tracked = Self {
            inner: body,
            ended: ended.clone(),
        };
        (tracked, ended)
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.ended.store(true, Ordering::Release);
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

/// The bytes a streamed response body reads at most per chunk.
pub const READ_CHUNK: u64 = 256 * 1024;

/// A blocking reader's bytes as a response body, each chunk read by a blocking task
/// of its own: a client that reads slowly or not at all holds no blocking-pool thread
/// while the body waits for it.
pub fn stream_reader<R: Read + Send + 'static>(reader: Take<R>) -> axum::body::Body {
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; reader.limit().min(READ_CHUNK) as usize];
            let read = reader.read(&mut buffer).map(|n| {
                buffer.truncate(n);
                Bytes::from(buffer)
            });
            (reader, read)
        })
        .await;
        match read {
            Ok((_, Ok(chunk))) if chunk.is_empty() => None,
            Ok((reader, Ok(chunk))) => Some((Ok(chunk), Some(reader))),
            Ok((_, Err(err))) => Some((Err(err), None)),
            Err(err) => Some((Err(std::io::Error::other(err)), None)),
        }
    });
    axum::body::Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A client that sends a piece, pauses, then sends another and ends.
    struct Pausing {
        step: u8,
        pause: Pin<Box<tokio::time::Sleep>>,
    }

    impl Body for Pausing {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.step += 1;
            match self.step {
                1 => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first"))))),
                2 => match self.pause.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" rest")))))
                    }
                    Poll::Pending => {
                        self.step -= 1;
                        Poll::Pending
                    }
                },
                _ => Poll::Ready(None),
            }
        }
    }

    fn pausing(pause: Duration) -> axum::body::Body {
        axum::body::Body::new(Pausing {
            step: 0,
            pause: Box::pin(tokio::time::sleep(pause)),
        })
    }

    #[tokio::test]
    async fn a_client_that_stops_sending_is_cut_off() {
        let body = IdleBody::with_timeout(
            pausing(Duration::from_millis(300)),
            Duration::from_millis(100),
        );
        let err = body.collect().await.unwrap_err();
        assert!(matches!(err, BodyError::Idle(_)));
    }

    #[tokio::test]
    async fn a_slow_client_that_keeps_sending_is_read_whole() {
        let body = IdleBody::with_timeout(
            pausing(Duration::from_millis(50)),
            Duration::from_millis(200),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"first rest");
    }

    #[tokio::test]
    async fn a_whole_body_is_refused_when_idle_or_too_large() {
        let body = IdleBody::with_timeout(
            pausing(Duration::from_millis(300)),
            Duration::from_millis(100),
        );
        let idle = read_whole(body, 100).await;
        assert!(matches!(idle, Err(BodyError::Idle(_))));
        let large = read_whole(axum::body::Body::from("0123456789"), 4).await;
        assert!(matches!(large, Err(BodyError::TooLarge(4))));
        let whole = read_whole(axum::body::Body::from("0123"), 4).await.unwrap();
        assert_eq!(&whole[..], b"0123");
    }

    /// A body nobody reads holds no blocking-pool thread: with a pool of one thread,
    /// blocking work still runs while bodies of large objects wait for their readers.
    #[test]
    fn bodies_waiting_for_slow_readers_hold_no_blocking_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ran = runtime.block_on(async {
            let started = async {
                let mut waiting = Vec::new();
                for _ in 0..4 {
                    let reader = std::io::Cursor::new(vec![7u8; 8 << 20]);
                    let mut body = stream_reader(reader.take(8 << 20)).into_data_stream();
                    let first = futures_util::StreamExt::next(&mut body).await;
                    assert_eq!(first.unwrap().unwrap().len() as u64, READ_CHUNK);
                    waiting.push(body);
                }
                let ran = tokio::task::spawn_blocking(|| "ran").await.unwrap();
                drop(waiting);
                ran
            };
            tokio::time::timeout(std::time::Duration::from_secs(30), started).await
        });
        assert_eq!(ran, Ok("ran"), "blocking work waited for a reader");
    }
}
