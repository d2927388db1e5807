//! A body that passes every frame on unchanged while it keeps a copy, up to
//! a bound, and hands the copy over when the body ends. The gateway wraps
//! the mirrored request and the champion's answer in it, so neither waits
//! to be read whole: the client gets each frame as soon as the champion
//! sends it, and the shadow gets the whole exchange afterwards.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

/// What a finished body hands over: its bytes and its trailers.
pub type Ended = Box<dyn FnOnce(Bytes, Option<HeaderMap>) + Send + Sync>;

/// The copying body; see the module.
pub struct Tee<B> {
    inner: B,
    chunks: Vec<Bytes>,
    copied: usize,
    limit: usize,
    trailers: Option<HeaderMap>,
    /// Taken when the body ends whole; dropped unused when it failed or
    /// outgrew `limit`.
    ended: Option<Ended>,
}

impl<B> Tee<B> {
    /// Copies at most `limit` bytes of `inner`; a longer body hands nothing over.
    pub fn new(inner: B, limit: usize, ended: Ended) -> Self {
        Tee {
            inner,
            chunks: Vec::new(),
            copied: 0,
            limit,
            trailers: None,
            ended: Some(ended),
        }
    }

    fn finish(&mut self) {
        if let Some(ended) = self.ended.take() {
            let bytes = match self.chunks.len() {
                1 => self.chunks.pop().unwrap_or_default(),
                _ => {
                    let mut all = BytesMut::with_capacity(self.copied);
                    self.chunks
                        .drain(..)
                        .for_each(|c| all.extend_from_slice(&c));
                    all.freeze()
                }
            };
            ended(bytes, self.trailers.take());
        }
    }
}

/// A slot the copy of a body lands in when the body has ended whole.
pub type Slot = Arc<Mutex<Option<Bytes>>>;

/// Wraps `inner` so that its copy lands in the returned slot.
pub fn into_slot<B>(inner: B, limit: usize) -> (Tee<B>, Slot) {
    let slot = Slot::default();
    let filled = slot.clone();
    let tee = Tee::new(
        inner,
        limit,
        Box::new(move |bytes, _| {
            *filled.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        }),
    );
    (tee, slot)
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.copied += data.len();
                    if this.copied > this.limit {
                        this.ended = None;
                        this.chunks = Vec::new();
                    } else if this.ended.is_some() {
                        this.chunks.push(data.clone());
                    }
                } else if let Some(t) = f.trailers_ref() {
                    this.trailers = Some(t.clone());
                }
                // A peer may not poll again once the body says it is over.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) => this.ended = None,
            None => this.finish(),
        }
        Poll::Ready(frame)
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

    type Frames =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>>;

    fn frames(data: &[&'static str], trailers: bool) -> Frames {
        let mut all: Vec<Result<Frame<Bytes>, std::io::Error>> = data
            .iter()
            .map(|d| Ok(Frame::data(Bytes::from_static(d.as_bytes()))))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            all.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures::stream::iter(all))
    }

    type Got = Arc<Mutex<Option<(Bytes, Option<HeaderMap>)>>>;

    fn tee(data: &[&'static str], trailers: bool, limit: usize) -> (Tee<Frames>, Got) {
        let got = Got::default();
        let into = got.clone();
        let tee = Tee::new(
            frames(data, trailers),
            limit,
            Box::new(move |b, t| *into.lock().unwrap() = Some((b, t))),
        );
        (tee, got)
    }

    #[tokio::test]
    async fn every_frame_passes_unchanged_and_the_copy_comes_at_the_end() {
        let (t, got) = tee(&["{\"a\":", " 1}"], true, 1024);
        let collected = t.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), "{\"a\": 1}");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        let (bytes, trailers) = got.lock().unwrap().take().expect("handed over");
        assert_eq!(bytes, "{\"a\": 1}");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_still_passes_but_hands_nothing_over() {
        let (t, got) = tee(&["12345", "678"], false, 6);
        assert_eq!(t.collect().await.unwrap().to_bytes(), "12345678");
        assert!(got.lock().unwrap().is_none());
        let (t, slot) = into_slot(frames(&["123456"], false), 6);
        t.collect().await.unwrap();
        assert_eq!(slot.lock().unwrap().as_deref(), Some(&b"123456"[..]));
    }

    #[tokio::test]
    async fn a_body_that_fails_hands_nothing_over() {
        let failing = StreamBody::new(futures::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"half"))),
            Err(std::io::Error::other("reset")),
        ]));
        let (t, slot) = into_slot(failing, 1024);
        assert!(t.collect().await.is_err());
        assert!(slot.lock().unwrap().is_none());
    }
}
