//! `GET /healthz`: the service is up, and which plugin serves each provider.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, RefundApi};

/// The answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` (a service that cannot answer does not answer).
    pub status: String,
    /// The loaded providers, by id.
    pub providers: Vec<ProviderHealth>,
}

/// One loaded provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderHealth {
    /// Provider id.
    pub id: String,
    /// Version of its plugin.
    pub version: String,
    /// SHA-256 of the plugin component (`native` for a plugin linked into the host).
    pub sha256: String,
}

/// Liveness and the loaded plugins.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    responses((status = 200, description = "The service is up", body = Health)),
)]
pub async fn healthz<S: RefundApi>(State(state): State<AppState<S>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        providers: state.service.providers(),
    })
}
