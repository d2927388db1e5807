//! Accepting the model server's connections: HTTP/1.1 and HTTP/2 (gRPC)
//! on one port, each connection served by hyper straight into the
//! server's front door.
//!
//! `axum::serve` did the same with two costs on every wake-up of a
//! connection: its request body boxed into axum's `Body` (the inference
//! path reads hyper's body as it comes), and a `select!` over the
//! connection and a shutdown signal whose `Notify` takes a lock shared by
//! every connection each time it is polled. Here a connection looks at one
//! flag instead, and is woken only when the server stops.
//!
//! Stopping (dropping the accept loop) behaves as `axum::serve` did:
//! every open connection finishes the requests it is answering and then
//! closes; no new connection is accepted.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::front::Front;

/// Serves connections on `listener` until the returned future is dropped.
pub(super) async fn serve(mut listener: TcpListener, front: Front) {
    let stop = Arc::new(Stop::default());
    // Dropped with this future: tells every open connection to finish.
    let _stopping = StopOnDrop(stop.clone());
    loop {
        // axum's accept: a connection error is skipped, any other (out of
        // file descriptors) logged and retried after a pause.
        let (tcp, _) = Listener::accept(&mut listener).await;
        // No Nagle: an HTTP/2 (gRPC) answer is several small writes, and the
        // last one would wait for the client's delayed ACK (~40 ms a call).
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(front.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .into_owned();
            if let Err(e) = (Connection {
                connection: Box::pin(connection),
                stop,
                key: None,
                stopping: false,
            })
            .await
            {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// The server's stop signal: a flag each connection reads when polled, and
/// the wakers of the connections waiting, to wake them when it is set.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Waker>>,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("stop list"));
        for waker in waiting.into_values() {
            waker.wake();
        }
    }
}

struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// hyper's connection on one accepted socket: HTTP/1.1 or HTTP/2, as the
/// client's first bytes say.
type HyperConnection = auto::Connection<
    'static,
    TokioIo<tokio::net::TcpStream>,
    TowerToHyperService<Front>,
    TokioExecutor,
>;

/// One connection, shut down gracefully once the server stops.
struct Connection {
    connection: Pin<Box<HyperConnection>>,
    stop: Arc<Stop>,
    /// This connection's place in `stop.waiting`, and the waker put there.
    key: Option<(u64, Waker)>,
    stopping: bool,
}

impl Future for Connection {
    type Output = <HyperConnection as Future>::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.stopping {
            if this.stop.stopped.load(Ordering::Acquire) {
                this.stopping = true;
                this.forget();
                this.connection.as_mut().graceful_shutdown();
            } else if !this
                .key
                .as_ref()
                .is_some_and(|(_, w)| w.will_wake(cx.waker()))
            {
                this.wait_with(cx.waker());
            }
        }
        let done = this.connection.as_mut().poll(cx);
        if done.is_ready() {
            this.forget();
        }
        done
    }
}

impl Connection {
    /// Puts (or replaces) this connection's waker on the stop list; the
    /// stop flag is read again under the list's lock, so a stop that came
    /// between the first read and here still wakes it.
    fn wait_with(&mut self, waker: &Waker) {
        let mut waiting = self.stop.waiting.lock().expect("stop list");
        if self.stop.stopped.load(Ordering::Acquire) {
            drop(waiting);
            waker.wake_by_ref();
            return;
        }
        let key = match &self.key {
            Some((key, _)) => *key,
            None => self.stop.next.fetch_add(1, Ordering::Relaxed),
        };
        waiting.insert(key, waker.clone());
        self.key = Some((key, waker.clone()));
    }

    fn forget(&mut self) {
        if let Some((key, _)) = self.key.take() {
            self.stop.waiting.lock().expect("stop list").remove(&key);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.forget();
    }
}
