//! The one local listener: it receives the browser's OAuth redirect.

use std::time::Duration;

/// The query of the one browser redirect an OAuth login waits for.
pub type CallbackQuery = std::collections::HashMap<String, String>;

/// Serves `GET /callback` on `listener` until the first such request (or
/// `timeout`), answers the browser with a short page, and returns the
/// redirect's query. The listener is closed when this returns.
pub async fn receive_callback(
    listener: tokio::net::TcpListener,
    timeout: Duration,
) -> Option<CallbackQuery> {
    use axum::extract::{Query, State};
    use axum::response::Html;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<CallbackQuery>(1);
    let page = |Query(q): Query<CallbackQuery>,
                State(tx): State<tokio::sync::mpsc::Sender<CallbackQuery>>| async move {
        let ok = q.contains_key("code");
        let _ = tx.try_send(q);
        Html(if ok {
            "<html><body><h3>webex-bulk: authorization received.</h3><p>You can close this window and return to the terminal.</p></body></html>"
        } else {
            "<html><body><h3>webex-bulk: authorization was not granted.</h3><p>See the terminal for details.</p></body></html>"
        })
    };
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(page))
        .with_state(tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let got = tokio::time::timeout(timeout, rx.recv())
        .await
        .ok()
        .flatten();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    got
}
