//! The accept loop. Each connection is served by hyper with its own kill signal, so a
//! handler can make the simulator drop the connection without answering.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Pause after a failed accept (such as running out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Kill signal of one connection, found in each of its requests' extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionKill(Arc<watch::Sender<bool>>);

impl Default for ConnectionKill {
    fn default() -> Self {
        ConnectionKill(Arc::new(watch::channel(false).0))
    }
}

impl ConnectionKill {
    /// Makes the connection task drop the connection (no answer is sent). The caller
    /// should then never finish (`std::future::pending().await`); the gate ends
    /// its work (see `routes::gate`).
    pub(crate) fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once `trigger` was called (at once if it was already).
    pub(crate) async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|killed| *killed).await;
    }
}

/// Serves connections from `listener` with `app` until `stop` fires (or its sender is
/// dropped); then aborts the connections still open.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, app.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "simulator: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Serves one connection until the client closes it or a handler kills it.
async fn serve_connection(stream: TcpStream, app: Router) {
    let _ = stream.set_nodelay(true);
    let kill = ConnectionKill::default();
    let service = {
        let kill = kill.clone();
        service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(kill.clone());
            app.clone().oneshot(request)
        })
    };
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulator: connection ended with an error");
            }
        }
        () = kill.triggered() => {
            tracing::debug!("simulator: dropping a connection without an answer");
        }
    }
}
