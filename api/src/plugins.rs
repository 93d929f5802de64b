//! `/v1/plugins` (scope `admin`): each provider's plugin versions; load a version, activate one
//! (rollback is activating an earlier one), remove one that is not active.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{AdminScope, Authorized};
use super::error::{ApiError, ErrorBody, JsonBody, body_rejection};
use super::{AppState, RefundApi};
use refundry_runtime::error::LoadError;
use refundry_service::registry::{Activated, Loaded, ProviderVersions, RegistryError};

/// The largest component accepted by `POST /v1/plugins/{provider}/versions`.
pub const PLUGIN_BODY_LIMIT: usize = 32 << 20;

/// The answer of `GET /v1/plugins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginList {
    /// Every configured provider, by id.
    pub providers: Vec<ProviderVersions>,
}

/// The body of `POST /v1/plugins/{provider}/activate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// A loaded version of the provider's plugin.
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// The body of `POST /v1/plugins/{provider}/versions`: the bytes of a component's `.wasm` file,
/// sent as they are (`application/wasm`), not wrapped in JSON. For the document only: the
/// handler reads the body itself.
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ComponentFile(pub Vec<u8>);

/// Every provider's loaded plugin versions and active one.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    operation_id = "list_plugins",
    responses(
        (status = 200, description = "Every provider's versions", body = PluginList),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
) -> Json<PluginList> {
    Json(PluginList {
        providers: state.service.plugins(),
    })
}

/// Loads a component (the request body) as a version of the provider's plugin. It is not
/// activated. Loading the very same component again changes nothing (200).
#[utoipa::path(
    post,
    path = "/v1/plugins/{provider}/versions",
    tag = "plugins",
    operation_id = "load_plugin_version",
    params(("provider" = String, Path, description = "Provider id", example = "mfs-africa")),
    request_body(content = inline(ComponentFile), content_type = "application/wasm",
        description = "The component's `.wasm` file (1 byte to 32 MiB)"),
    responses(
        (status = 201, description = "Loaded", body = Loaded, links(
            ("RemoveVersion" = (operation_id = "remove_plugin_version",
                parameters(("provider" = "$request.path.provider"), ("version" = "$response.body#/version")),
                description = "Unload this version again")),
            ("ActivateVersion" = (operation_id = "activate_plugin_version",
                parameters(("provider" = "$request.path.provider")),
                request_body = json!({"version": "$response.body#/version"}),
                description = "Make this version the active one")),
        )),
        (status = 200, description = "This component was already loaded", body = Loaded, links(
            ("RemoveVersion" = (operation_id = "remove_plugin_version",
                parameters(("provider" = "$request.path.provider"), ("version" = "$response.body#/version")),
                description = "Unload this version (refused while it is the active one)")),
        )),
        (status = 400, description = "An empty body, or one cut short (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`)", body = ErrorBody),
        (status = 409, description = "Another component has this version (`version_conflict`), \
            or the provider runs natively (`native_provider`)", body = ErrorBody),
        (status = 413, description = "Body over 32 MiB", body = ErrorBody),
        (status = 422, description = "Refused: `not_a_component`, `forbidden_import`, \
            `contract_mismatch`, `describe_failed`, `provider_mismatch`", body = ErrorBody),
        (status = 500, description = "The registry could not be written (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn load<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
    Path(provider): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("provider", provider.as_str());
    let body = body.map_err(|r| body_rejection(r, PLUGIN_BODY_LIMIT))?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "the body must be the component's bytes",
        ));
    }
    let loaded = state
        .service
        .load_plugin(&provider, body.to_vec())
        .await
        .map_err(registry_error)?;
    let status = if loaded.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(loaded)).into_response())
}

/// Makes a loaded version the active one: new refunds use it at once; requests already inside
/// the plugin finish on the version they started with.
#[utoipa::path(
    post,
    path = "/v1/plugins/{provider}/activate",
    tag = "plugins",
    operation_id = "activate_plugin_version",
    params(("provider" = String, Path, description = "Provider id", example = "mfs-africa")),
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "Activated", body = Activated),
        (status = 400, description = "The body is not `{\"version\": \"...\"}`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`) or version \
            (`unknown_version`)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 500, description = "The registry could not be written (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn activate<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
    Path(provider): Path<String>,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Result<Json<Activated>, ApiError> {
    tracing::Span::current().record("provider", provider.as_str());
    state
        .service
        .activate_plugin(&provider, &req.version)
        .await
        .map(Json)
        .map_err(registry_error)
}

/// Unloads a version that is not active; refunds it created are then served by the active one.
#[utoipa::path(
    delete,
    path = "/v1/plugins/{provider}/versions/{version}",
    tag = "plugins",
    operation_id = "remove_plugin_version",
    params(
        ("provider" = String, Path, description = "Provider id", example = "mfs-africa"),
        ("version" = String, Path, description = "A loaded version", example = "0.2.0"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`) or version \
            (`unknown_version`)", body = ErrorBody),
        (status = 409, description = "The version is active (`version_active`)", body = ErrorBody),
        (status = 500, description = "The registry could not be written (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn remove<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
    Path((provider, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    tracing::Span::current().record("provider", provider.as_str());
    state
        .service
        .remove_plugin(&provider, &version)
        .await
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(registry_error)
}

/// The API error for a refused registry change.
pub fn registry_error(e: RegistryError) -> ApiError {
    let message = e.to_string();
    let (status, code) = match &e {
        RegistryError::UnknownProvider(_) => (StatusCode::NOT_FOUND, "unknown_provider"),
        RegistryError::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown_version"),
        RegistryError::VersionConflict { .. } => (StatusCode::CONFLICT, "version_conflict"),
        RegistryError::Active { .. } => (StatusCode::CONFLICT, "version_active"),
        RegistryError::Native(_) => (StatusCode::CONFLICT, "native_provider"),
        RegistryError::Rejected(l) => (StatusCode::UNPROCESSABLE_ENTITY, rejection_code(l)),
        RegistryError::Database(_) => return ApiError::internal(&e),
    };
    ApiError::new(status, code, message)
}

/// The error code of a refused component.
pub fn rejection_code(e: &LoadError) -> &'static str {
    match e {
        LoadError::Read { .. } | LoadError::NotAComponent(_) => "not_a_component",
        LoadError::ForbiddenImport { .. } => "forbidden_import",
        LoadError::Contract(_) => "contract_mismatch",
        LoadError::Describe(_) => "describe_failed",
        LoadError::ProviderMismatch { .. } => "provider_mismatch",
    }
}
