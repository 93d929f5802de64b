//! The OpenAPI 3 document of the API (`GET /openapi.json`), generated from the handlers'
//! `#[utoipa::path]` attributes and the record types' `ToSchema` derives.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Refundry",
        description = "Provider refunds through sandboxed WebAssembly plugins. Every error \
            answer has the shape `{\"error\": {\"code\", \"message\", \"provider_code\", \"field\"}}`."
    ),
    paths(
        super::refunds::create,
        super::refunds::list,
        super::refunds::get,
        super::refunds::exchanges,
        super::outbound_events::list,
        super::reconciliations::list,
        super::reconciliations::get,
        super::reconciliations::run,
        super::webhook_intake::receive,
        super::plugins::list,
        super::plugins::load,
        super::plugins::activate,
        super::plugins::remove,
        super::health::healthz,
        super::metrics::metrics,
        openapi_json,
    ),
    components(schemas(
        super::error::ErrorBody,
        super::error::ErrorDetail,
        super::refunds::RefundFailureBody,
        super::webhook_intake::WebhookReceipt,
        super::health::Health,
        super::health::ProviderHealth,
        refundry_service::refunds::NewRefund,
        refundry_service::refunds::OriginalPayment,
        refundry_ledger::RefundRecord,
        refundry_ledger::RefundDetail,
        refundry_ledger::HistoryEntry,
        refundry_ledger::Page,
        refundry_ledger::Status,
        refundry_ledger::Source,
        refundry_ledger::Failure,
        refundry_ledger::ExchangeRecord,
        refundry_ledger::EventPage,
        refundry_ledger::EventRecord,
        refundry_ledger::EventBody,
        refundry_ledger::DeliveryRecord,
        refundry_ledger::DeliveryState,
        refundry_ledger::AttemptRecord,
        refundry_ledger::EventData,
        refundry_ledger::DiscrepancyData,
        refundry_ledger::ReconciliationPage,
        refundry_ledger::ReconciliationRecord,
        refundry_ledger::Finding,
        refundry_ledger::FindingSide,
        refundry_ledger::FindingKind,
        refundry_ledger::Trigger,
        refundry_ledger::RunOutcome,
        super::reconciliations::ReconcileRequest,
        super::webhook_intake::EventReceipt,
        super::plugins::PluginList,
        super::plugins::ActivateRequest,
        refundry_service::registry::ProviderVersions,
        refundry_service::registry::VersionView,
        refundry_service::view::ProviderInfoView,
        refundry_service::registry::Loaded,
        refundry_service::registry::Activated,
        refundry_service::registry::LoadedFrom,
        refundry_service::export::Format,
    )),
    modifiers(&BearerAuth, &KnownCurrencies),
    tags(
        (name = "refunds", description = "Refunds (bearer token with scope `refunds`; exchanges need `admin`)"),
        (name = "events", description = "Outbound events to the gateway's endpoints, with their deliveries (scope `refunds`)"),
        (name = "reconciliations", description = "Each provider's own list of refunds against the ledger: runs and findings (scope `refunds`; a run on demand needs `admin`)"),
        (name = "webhooks", description = "Provider notifications (signed by the provider, no token)"),
        (name = "plugins", description = "Provider plugin versions: load, activate, roll back, remove (scope `admin`)"),
        (name = "service", description = "Liveness, metrics (scope `metrics`) and the document itself"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the refund paths require.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Lists the currency codes [`refundry_service::money::CURRENCIES`] knows as the only values of a refund
/// request's `currency` and `original.currency` (any other is a 400), from the list the check
/// itself reads, so that the two cannot drift apart.
struct KnownCurrencies;

impl Modify for KnownCurrencies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let codes: Vec<serde_json::Value> = refundry_service::money::CURRENCIES
            .iter()
            .map(|(code, _)| serde_json::Value::from(*code))
            .collect();
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for schema in ["NewRefund", "OriginalPayment"] {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
                continue;
            };
            if let Some(RefOr::T(Schema::Object(currency))) = object.properties.get_mut("currency")
            {
                currency.enum_values = Some(codes.clone());
            }
        }
    }
}

/// The document as JSON, generated once (it only depends on the code).
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc =
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        camel_case_links(&mut doc);
        serde_json::to_string(&doc).expect("the OpenAPI document serializes")
    })
}

/// utoipa 5.5 writes a Link Object's fields in Rust's snake case (`operation_id`,
/// `request_body`); OpenAPI names them `operationId`, `operationRef` and `requestBody`, and a
/// client that follows links (Schemathesis's stateful phase) finds no target without them.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
        else {
            continue;
        };
        let links = responses
            .values_mut()
            .filter_map(|response| response.get_mut("links"))
            .filter_map(|links| links.as_object_mut())
            .flat_map(|links| links.values_mut())
            .filter_map(|link| link.as_object_mut());
        for link in links {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")),
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_parses_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/v1/refunds", "post"),
            ("/v1/refunds", "get"),
            ("/v1/refunds/{id}", "get"),
            ("/v1/refunds/{id}/exchanges", "get"),
            ("/v1/webhooks/{provider}", "post"),
            ("/healthz", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing"
            );
        }
        let scheme = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        let create = &doc["paths"]["/v1/refunds"]["post"];
        assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
        for status in [
            "201", "202", "400", "401", "403", "404", "409", "413", "422", "503",
        ] {
            assert!(create["responses"].get(status).is_some(), "{status}");
        }
        assert!(doc["components"]["schemas"].get("RefundRecord").is_some());
        assert!(doc["components"]["schemas"].get("NewRefund").is_some());
    }
}
