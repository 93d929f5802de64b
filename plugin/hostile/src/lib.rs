//! A deliberately misbehaving plugin, for testing that the host contains what a plugin can do.
//!
//! `create-refund` switches on the request's `reason`:
//! - `spin`: loops forever (the host's epoch deadline must stop it);
//! - `hog`: allocates and leaks 1 MiB chunks until allocation fails, which aborts the instance
//!   (the host's memory cap must stop it);
//! - `escape`: sends a request to `escape_url` (config; default `http://127.0.0.2:9/steal`), which
//!   the host must deny; the error it got comes back as a refusal of kind `other`;
//! - `panic`: panics (the host must see a trap and the panic message in its log);
//! - `log-secret`: logs `api_secret` in the message and in a field (the host must redact it);
//! - `storage`: increments the decimal counter stored under `counter` and answers `count-<n>`;
//! - anything else: a well-behaved pending refund `hostile-<external id>`.
//!
//! With the cargo feature `trap-describe`, `describe()` panics: a component that fits the
//! contract but cannot say what it is, which the host's registry must refuse to load.
//!
//! Never link its `spin` or `hog` paths into anything but a sandboxed test.

use refundry_sdk::{
    Host, Level, Money, Provider, ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest,
    RefundStatus, Refusal, RefusalKind, WebhookError, WebhookOutcome, WebhookRequest, http,
};

/// The hostile provider.
pub struct Hostile;

refundry_sdk::export_provider!(Hostile);

const DEFAULT_ESCAPE_URL: &str = "http://127.0.0.2:9/steal";

fn refused(message: String) -> RefundError {
    RefundError::Refused(Refusal {
        kind: RefusalKind::Other,
        provider_code: None,
        message,
        http_status: None,
    })
}

fn pending(provider_refund_id: String, req: &RefundRequest) -> Refund {
    Refund {
        provider_refund_id,
        external_refund_id: Some(req.external_refund_id.clone()),
        original_transaction_id: req.original_transaction_id.clone(),
        amount: req.amount.clone(),
        status: RefundStatus::Pending,
        provider_status: "pending".into(),
        failure_reason: None,
        created_at: None,
        updated_at: None,
    }
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        // black_box keeps the loop from being proven side-effect free and removed.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog() -> ! {
    loop {
        // Infallible allocation on purpose: when memory.grow is refused, the allocator's failure
        // aborts the instance, which is what a runaway plugin looks like to the host.
        let chunk = vec![1u8; 1 << 20];
        std::hint::black_box(chunk.leak());
    }
}

fn escape(host: &impl Host, req: &RefundRequest) -> Result<Refund, RefundError> {
    let url = host
        .config("escape_url")
        .unwrap_or_else(|| DEFAULT_ESCAPE_URL.into());
    let sent = host.http_send(http::Request {
        method: http::Method::Get,
        url,
        headers: vec![],
        body: None,
    });
    match sent {
        Err(err) => Err(refused(format!("http: {err:?}"))),
        Ok(_) => Ok(pending("escaped".into(), req)),
    }
}

fn count(host: &impl Host, req: &RefundRequest) -> Result<Refund, RefundError> {
    let storage = |e| refused(format!("storage: {e:?}"));
    // The counter is stored as ASCII decimal; anything unreadable counts as 0.
    let current = host
        .storage_get("counter")
        .map_err(storage)?
        .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let next = current + 1;
    host.storage_set("counter", next.to_string().as_bytes())
        .map_err(storage)?;
    Ok(pending(format!("count-{next}"), req))
}

impl Provider for Hostile {
    fn describe() -> ProviderInfo {
        if cfg!(feature = "trap-describe") {
            panic!("hostile plugin: describe() traps on purpose (feature trap-describe)");
        }
        ProviderInfo {
            id: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Hostile test plugin".into(),
            currencies: vec!["KES".into()],
            partial_refunds: true,
            multiple_refunds: true,
            refund_window_days: None,
            status_queries: !cfg!(feature = "callback-only"),
            reversal_window_days: cfg!(feature = "callback-only").then_some(3),
            max_list_range_days: None,
        }
    }

    fn create_refund(host: &impl Host, req: RefundRequest) -> Result<Refund, RefundError> {
        match req.reason.as_deref() {
            Some("spin") => spin(),
            Some("hog") => hog(),
            Some("escape") => escape(host, &req),
            Some("panic") => panic!("hostile plugin panicked on purpose"),
            Some("log-secret") => {
                let secret = host.config("api_secret").unwrap_or_default();
                host.log(
                    Level::Info,
                    &format!("the api secret is {secret}"),
                    &[("api_secret", &secret)],
                );
                Ok(pending(format!("hostile-{}", req.external_refund_id), &req))
            }
            Some("storage") => count(host, &req),
            _ => Ok(pending(format!("hostile-{}", req.external_refund_id), &req)),
        }
    }

    fn get_refund(
        _host: &impl Host,
        lookup: RefundLookup,
        _original_transaction_id: Option<String>,
    ) -> Result<Refund, RefundError> {
        let (provider_refund_id, external_refund_id) = match lookup {
            RefundLookup::ProviderRefundId(id) => (id, None),
            RefundLookup::ExternalRefundId(ext) => (format!("hostile-{ext}"), Some(ext)),
        };
        Ok(Refund {
            provider_refund_id,
            external_refund_id,
            original_transaction_id: String::new(),
            amount: Money {
                amount_minor: 0,
                currency: "KES".into(),
            },
            status: RefundStatus::Pending,
            provider_status: "pending".into(),
            failure_reason: None,
            created_at: None,
            updated_at: None,
        })
    }

    fn parse_webhook(
        _host: &impl Host,
        _req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        Err(WebhookError::Malformed("hostile".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_sdk::testing::FakeHost;

    fn request(reason: Option<&str>) -> RefundRequest {
        RefundRequest {
            original_transaction_id: "txn_1".into(),
            external_refund_id: "r-1".into(),
            amount: Money {
                amount_minor: 150_000,
                currency: "KES".into(),
            },
            reason: reason.map(Into::into),
            order_id: None,
        }
    }

    #[test]
    fn well_behaved_by_default() {
        let refund = Hostile::create_refund(&FakeHost::new(), request(None)).unwrap();
        assert_eq!(refund, pending("hostile-r-1".into(), &request(None)));
        assert_eq!(refund.amount.amount_minor, 150_000);
    }

    #[test]
    fn escape_reports_the_http_error() {
        let host =
            FakeHost::new().with_responder(|_| Err(http::HttpError::Denied("not allowed".into())));
        let err = Hostile::create_refund(&host, request(Some("escape"))).unwrap_err();
        assert_eq!(
            err,
            refused(r#"http: HttpError::Denied("not allowed")"#.into())
        );
        assert_eq!(host.requests()[0].url, DEFAULT_ESCAPE_URL);

        let open = FakeHost::new()
            .with_config("escape_url", "http://evil.example/")
            .with_responder(|_| Ok(refundry_sdk::testing::response(200, &[], Vec::new())));
        let refund = Hostile::create_refund(&open, request(Some("escape"))).unwrap();
        assert_eq!(refund.provider_refund_id, "escaped");
        assert_eq!(open.requests()[0].url, "http://evil.example/");
    }

    #[test]
    fn logs_the_secret() {
        let host = FakeHost::new().with_config("api_secret", "s3cr3t");
        Hostile::create_refund(&host, request(Some("log-secret"))).unwrap();
        let line = &host.logs()[0];
        assert_eq!(line.level, Level::Info);
        assert!(line.message.contains("s3cr3t"));
        assert_eq!(line.fields, vec![("api_secret".into(), "s3cr3t".into())]);
    }

    #[test]
    fn storage_counts() {
        let host = FakeHost::new();
        for n in 1..=3 {
            let refund = Hostile::create_refund(&host, request(Some("storage"))).unwrap();
            assert_eq!(refund.provider_refund_id, format!("count-{n}"));
        }
        assert_eq!(host.stored("counter"), Some(b"3".to_vec()));
    }

    #[test]
    #[should_panic(expected = "hostile plugin panicked on purpose")]
    fn panics() {
        let _ = Hostile::create_refund(&FakeHost::new(), request(Some("panic")));
    }

    #[test]
    #[cfg(feature = "trap-describe")]
    #[should_panic(expected = "describe() traps on purpose")]
    fn describe_traps_with_the_feature() {
        let _ = Hostile::describe();
    }

    #[test]
    #[cfg(not(feature = "trap-describe"))]
    fn describe_get_and_webhook() {
        let info = Hostile::describe();
        assert_eq!(info.id, "hostile");
        assert_eq!(info.currencies, vec!["KES".to_string()]);
        assert_eq!(info.refund_window_days, None);

        let host = FakeHost::new();
        let by_ext =
            Hostile::get_refund(&host, RefundLookup::ExternalRefundId("r-9".into()), None).unwrap();
        assert_eq!(by_ext.provider_refund_id, "hostile-r-9");
        assert_eq!(by_ext.status, RefundStatus::Pending);
        let by_id =
            Hostile::get_refund(&host, RefundLookup::ProviderRefundId("p-1".into()), None).unwrap();
        assert_eq!(by_id.provider_refund_id, "p-1");
        let req = WebhookRequest {
            method: "POST".into(),
            path: "/".into(),
            query: None,
            headers: Vec::new(),
            body: b"{}".to_vec(),
        };
        assert_eq!(
            Hostile::parse_webhook(&host, &req),
            Err(WebhookError::Malformed("hostile".into()))
        );
        // Contract 0.2's default: a provider that cannot list refunds says so.
        let range = refundry_sdk::TimeRange { from: 0, to: 1 };
        assert!(matches!(
            Hostile::list_refunds(&host, range, None),
            Err(RefundError::Refused(refundry_sdk::Refusal {
                kind: refundry_sdk::RefusalKind::Unsupported,
                ..
            }))
        ));
    }
}
