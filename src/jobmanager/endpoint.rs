//! The JobManager's one network endpoint: the REST API and the TaskManagers' gRPC service on
//! the same port (HTTP/1.1 for REST, HTTP/2 for gRPC), so a leader publishes one address and
//! users and TaskManagers find it the same way.

use tokio_util::sync::CancellationToken;

use super::rest::{self, RestState};
use super::taskmanagers::TaskManagerPool;

/// REST routes merged with the gRPC service of `pool`.
pub fn router(pool: &TaskManagerPool, state: RestState) -> axum::Router {
    let grpc = tonic::service::Routes::new(pool.service())
        .prepare()
        .into_axum_router();
    rest::router(state).merge(grpc)
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the JobManager endpoint stopped");
    }
}
