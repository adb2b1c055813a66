//! The JobManager's one network endpoint: the REST API and the TaskManagers' gRPC service on
//! the same port (HTTP/1.1 for REST, HTTP/2 for gRPC), so a leader publishes one address and
//! users and TaskManagers find it the same way.

use tokio_util::sync::CancellationToken;

use super::rest::{self, RestState};
use super::taskmanagers::TaskManagerPool;

/// A new leader's TaskManager slot pool (fenced with its epoch and session id) and the REST
/// state over it, from the configuration (`slot.request.timeout`).
pub fn leader_state(
    config: &crate::config::Config,
    leadership: &crate::ha::Leadership,
) -> Result<(TaskManagerPool, RestState), crate::config::ConfigError> {
    let pool = TaskManagerPool::new(
        leadership.epoch,
        &leadership.session_id.to_string(),
        config
            .duration("slot.request.timeout")?
            .unwrap_or(std::time::Duration::from_secs(300)),
    );
    let rest = RestState {
        taskmanagers: Some(pool.clone()),
        config: std::sync::Arc::new(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        leader_epoch: Some(leadership.epoch),
        ..Default::default()
    };
    Ok((pool, rest))
}

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
