//! The API's HTTP listener: hyper's server with the limits `axum::serve` does not set. A client
//! gets `client_timeout` to send its headers (and to start its next request on an idle kept-alive
//! connection: hyper closes it then), at most `max_connections` are open at once (the rest wait in
//! the kernel's backlog), and at shutdown requests in flight get `grace` to finish before their
//! connections are closed.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub client_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets requests in
/// flight finish for up to `grace`, and returns. `false` when the grace ran out with connections
/// still open (they are closed).
pub async fn serve(listener: TcpListener, app: Router, options: Options, shutdown: impl Future<Output = ()>) -> bool {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.client_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(options.client_timeout);
    let graceful = GracefulShutdown::new();
    // Turned true when the grace has run out: every connection still open is dropped.
    let (close, closed) = tokio::sync::watch::channel(false);
    let open = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle: a response written in more than one segment would otherwise wait for the
        // client's delayed acknowledgement (tens of milliseconds).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(axum::body::Body::new)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service)).into_owned();
        let conn = graceful.watch(conn);
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                _ = closed.wait_for(|c| *c) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!(grace_ms = options.grace.as_millis() as u64, "requests still in flight at the end of the shutdown grace; closing them");
            let _ = close.send(true);
            false
        }
    }
}
