//! Bodies plugins may read: a request or response body stays a stream until a hook asks
//! for it; then it is read up to the runtime's body limit and kept, so the proxy still
//! sends every byte on. A body longer than the limit is never copied whole: what was read
//! of it is sent first, the rest streams after it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Mutex;
use weir_plugin_runtime::{BodyError, BodySource};

use crate::body::{self, BoxError, ProxyBody};

/// Where a [`LazyBody`] is.
enum State {
    /// Nobody read it.
    Unread(ProxyBody),
    /// Read: the bytes read (the whole body when `rest` is `None`, then with the
    /// trailers it ended with, if any), and what was not.
    Read {
        read: Bytes,
        trailers: Option<HeaderMap>,
        rest: Option<ProxyBody>,
    },
    /// Reading failed; the proxy cannot send it on either.
    Failed(String),
    /// Taken back by the proxy.
    Taken,
}

/// A body handed to plugins as a [`BodySource`], and taken back by the proxy with
/// [`LazyBody::take`] once the hooks ran.
#[derive(Clone)]
pub struct LazyBody {
    state: Arc<Mutex<State>>,
    size_hint: Option<u64>,
}

impl std::fmt::Debug for LazyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyBody")
            .field("size_hint", &self.size_hint)
            .finish_non_exhaustive()
    }
}

impl LazyBody {
    /// Wraps `body`, whose length is `size_hint` when known.
    pub fn new(body: ProxyBody, size_hint: Option<u64>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::Unread(body))),
            size_hint,
        }
    }

    /// The body to send on: untouched when no plugin read it, else the bytes read
    /// followed by the rest. Waits for a read in progress to end.
    pub async fn take(&self) -> ProxyBody {
        let mut state = self.state.lock().await;
        match std::mem::replace(&mut *state, State::Taken) {
            State::Unread(body) => body,
            State::Read {
                read,
                trailers: None,
                rest: None,
            } => body::full(read),
            State::Read {
                read,
                trailers: Some(trailers),
                rest: None,
            } => Prefixed {
                prefix: Some(read),
                rest: one_frame(Ok(Frame::trailers(trailers))),
            }
            .boxed_unsync(),
            State::Read {
                read,
                rest: Some(rest),
                ..
            } => Prefixed {
                prefix: Some(read),
                rest,
            }
            .boxed_unsync(),
            State::Failed(message) => failed(message),
            State::Taken => failed("the body was already sent".into()),
        }
    }
}

fn failed(message: String) -> ProxyBody {
    one_frame(Err(message.into()))
}

/// A body of one frame (or one error).
fn one_frame(frame: Result<Frame<Bytes>, BoxError>) -> ProxyBody {
    http_body_util::StreamBody::new(futures::stream::once(async move { frame })).boxed_unsync()
}

impl BodySource for LazyBody {
    fn size_hint(&self) -> Option<u64> {
        self.size_hint
    }

    fn read(&self, limit: usize) -> BoxFuture<'static, Result<Bytes, BodyError>> {
        let state = self.state.clone();
        let known_too_large = self.size_hint.is_some_and(|size| size > limit as u64);
        Box::pin(async move {
            if known_too_large {
                return Err(BodyError::TooLarge { limit });
            }
            let mut state = state.lock().await;
            match &mut *state {
                State::Read {
                    read, rest: None, ..
                } if read.len() <= limit => Ok(read.clone()),
                State::Read { .. } => Err(BodyError::TooLarge { limit }),
                State::Failed(message) => Err(BodyError::Read(message.clone())),
                State::Taken => Err(BodyError::Read("the body was already sent".into())),
                State::Unread(_) => {
                    let State::Unread(mut body) = std::mem::replace(&mut *state, State::Taken)
                    else {
                        unreachable!("matched above");
                    };
                    let mut read = BytesMut::new();
                    let mut trailers = None;
                    loop {
                        match body.frame().await {
                            None => {
                                let read = read.freeze();
                                *state = State::Read {
                                    read: read.clone(),
                                    trailers,
                                    rest: None,
                                };
                                return Ok(read);
                            }
                            Some(Ok(frame)) => {
                                // Plugins see the data; trailers are kept to send on.
                                match frame.into_data() {
                                    Ok(data) => read.extend_from_slice(&data),
                                    Err(frame) => trailers = frame.into_trailers().ok(),
                                }
                                if read.len() > limit {
                                    *state = State::Read {
                                        read: read.freeze(),
                                        trailers: None,
                                        rest: Some(body),
                                    };
                                    return Err(BodyError::TooLarge { limit });
                                }
                            }
                            Some(Err(error)) => {
                                let message = error.to_string();
                                *state = State::Failed(message.clone());
                                return Err(BodyError::Read(message));
                            }
                        }
                    }
                }
            }
        })
    }
}

/// Bytes already read, then the rest of the stream.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> ProxyBody {
        frames(
            parts
                .iter()
                .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
                .collect(),
        )
    }

    fn frames(frames: Vec<Frame<Bytes>>) -> ProxyBody {
        http_body_util::StreamBody::new(futures::stream::iter(frames.into_iter().map(Ok)))
            .boxed_unsync()
    }

    async fn collect(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn unread_bodies_pass_untouched() {
        let lazy = LazyBody::new(chunks(&["ab", "cd"]), None);
        assert_eq!(collect(lazy.take().await).await, "abcd");
    }

    #[tokio::test]
    async fn read_bodies_are_kept_and_sent_whole() {
        let lazy = LazyBody::new(chunks(&["ab", "cd"]), None);
        assert_eq!(lazy.read(10).await.unwrap(), "abcd");
        assert_eq!(lazy.read(10).await.unwrap(), "abcd", "read twice");
        assert_eq!(collect(lazy.take().await).await, "abcd");
    }

    #[tokio::test]
    async fn read_bodies_keep_their_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let lazy = LazyBody::new(
            frames(vec![
                Frame::data(Bytes::from_static(b"ab")),
                Frame::trailers(trailers.clone()),
            ]),
            None,
        );
        assert_eq!(lazy.read(10).await.unwrap(), "ab");
        let sent = lazy.take().await.collect().await.unwrap();
        assert_eq!(sent.trailers(), Some(&trailers));
        assert_eq!(sent.to_bytes(), "ab");
    }

    #[tokio::test]
    async fn long_bodies_stay_streams_and_lose_nothing() {
        let lazy = LazyBody::new(chunks(&["ab", "cd", "ef"]), None);
        assert_eq!(lazy.read(3).await, Err(BodyError::TooLarge { limit: 3 }));
        assert_eq!(lazy.read(3).await, Err(BodyError::TooLarge { limit: 3 }));
        assert_eq!(collect(lazy.take().await).await, "abcdef");

        let announced = LazyBody::new(chunks(&["abcdef"]), Some(6));
        assert_eq!(
            announced.read(3).await,
            Err(BodyError::TooLarge { limit: 3 }),
            "refused from its length, unread"
        );
        assert_eq!(collect(announced.take().await).await, "abcdef");
    }
}
