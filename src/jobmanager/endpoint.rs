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

/// Serves [`router`] on `listener` until `shutdown`.
pub fn spawn(
    listener: tokio::net::TcpListener,
    pool: &TaskManagerPool,
    state: RestState,
    shutdown: CancellationToken,
) {
    let app = router(pool, state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "the JobManager endpoint stopped");
        }
    });
}
