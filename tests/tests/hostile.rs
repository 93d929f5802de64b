//! A hostile plugin in the real host: it may loop, hoard memory, reach for other hosts, panic and
//! log secrets. The host stops each at its limit with a typed error and keeps serving.

use std::io::Write;
use std::sync::{Arc, Mutex};

use refundry_runtime::LoadError;
use refundry_runtime::PluginError;
use refundry_runtime::RefundError;
use refundry_runtime::RefusalKind;
use refundry_runtime::component::PluginComponent;
use refundry_runtime::engine::Engine;
use refundry_service::Config;
use refundry_service::OperationError;
use refundry_service::Providers;
use refundry_service::registry::RegistryError;
use refundry_tests::kes_refund;

const SECRET: &str = "hostile-secret-4f1c2b9e";

fn config(extra_settings: &str) -> Config {
    refundry_tests::hostile_config(extra_settings, SECRET)
}

async fn host(extra_settings: &str) -> Providers {
    Providers::start(&config(extra_settings)).await.unwrap()
}

async fn run(host: &Providers, reason: &str) -> Result<refundry_runtime::Refund, OperationError> {
    let mut req = kes_refund("txn", "h-1", 100);
    req.reason = Some(reason.into());
    host.create_refund("hostile", &req).await
}

#[tokio::test]
async fn endless_loop_is_stopped_at_the_deadline_and_the_host_keeps_serving() {
    let host = host("").await;
    let started = std::time::Instant::now();
    let err = run(&host, "spin").await.unwrap_err();
    assert!(
        matches!(
            err,
            OperationError::Plugin(PluginError::DeadlineExceeded {
                op: "create-refund",
                ..
            })
        ),
        "{err:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed.as_millis() < 3_000,
        "stopped after {elapsed:?}, deadline 500 ms"
    );
    let ok = run(&host, "fine").await.unwrap();
    assert_eq!(ok.provider_refund_id, "hostile-h-1");
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_cap() {
    let host = host("").await;
    let err = run(&host, "hog").await.unwrap_err();
    assert!(
        matches!(
            err,
            OperationError::Plugin(PluginError::MemoryLimit {
                limit: 8_388_608,
                ..
            })
        ),
        "{err:?}"
    );
    run(&host, "fine").await.unwrap();
}

#[tokio::test]
async fn panic_is_reported_then_trapped_and_the_next_operation_succeeds() {
    let (captured, _guard) = capture_logs();
    let host = host("").await;
    let err = run(&host, "panic").await.unwrap_err();
    assert!(
        matches!(err, OperationError::Plugin(PluginError::Trap { .. })),
        "{err:?}"
    );
    // The SDK's panic hook reported the message through `log` before the trap.
    let log = captured.text();
    assert!(log.contains("hostile plugin panicked on purpose"), "{log}");
    run(&host, "fine").await.unwrap();
}

#[tokio::test]
async fn http_to_another_host_is_refused_without_a_connection() {
    // A listener on another loopback address: the plugin tries to reach it.
    let bait = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let url = format!("http://{}/steal", bait.local_addr().unwrap());
    let host = host(&format!("escape_url = \"{url}\"")).await;
    match run(&host, "escape").await {
        Err(OperationError::Refund(RefundError::Refused(r))) => {
            assert_eq!(r.kind, RefusalKind::Other);
            assert!(r.message.contains("Denied"), "{}", r.message);
        }
        other => panic!("expected the plugin to report a denied request, got {other:?}"),
    }
    assert!(
        matches!(bait.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host connected to a host outside the allowlist"
    );
}

#[tokio::test]
async fn storage_persists_across_operations() {
    let host = host("").await;
    assert_eq!(
        run(&host, "storage").await.unwrap().provider_refund_id,
        "count-1"
    );
    assert_eq!(
        run(&host, "storage").await.unwrap().provider_refund_id,
        "count-2"
    );
}

/// Collects everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Sends this thread's log lines (the test runtime is single-threaded) to a buffer.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn secrets_a_plugin_logs_are_redacted() {
    let (captured, _guard) = capture_logs();
    let host = host("").await;
    run(&host, "log-secret").await.unwrap();
    let log = captured.text();
    assert!(
        log.contains("[redacted]"),
        "the plugin's line was not logged: {log}"
    );
    assert!(!log.contains(SECRET), "secret leaked into the log: {log}");
}

#[tokio::test]
async fn component_importing_outside_the_contract_is_refused_at_load() {
    let engine = Engine::new(Default::default()).unwrap();
    // The contract a component was built for is the provider interface it exports: this one
    // claims 0.2.0, and reaches for WASI besides.
    let wat = r#"(component
        (import "wasi:cli/environment@0.2.0" (instance
            (export "get-arguments" (func (result (list string))))))
        (instance $provider)
        (export "refundry:provider/provider@0.2.0" (instance $provider))
    )"#;
    let bytes = wat::parse_str(wat).unwrap();
    match PluginComponent::compile(&engine, &bytes) {
        Err(LoadError::ForbiddenImport {
            import, contract, ..
        }) => {
            assert_eq!(import, "wasi:cli/environment@0.2.0");
            assert_eq!(contract, "0.2.0");
        }
        Err(other) => panic!("expected ForbiddenImport, got {other}"),
        Ok(_) => panic!("a component importing WASI was loaded"),
    }
    // Exporting no provider interface, it is no plugin of any released contract, whatever it
    // imports.
    let no_provider = wat::parse_str(
        r#"(component
        (import "wasi:cli/environment@0.2.0" (instance
            (export "get-arguments" (func (result (list string))))))
    )"#,
    )
    .unwrap();
    assert!(matches!(
        PluginComponent::compile(&engine, &no_provider),
        Err(LoadError::Contract(_))
    ));
    assert!(matches!(
        PluginComponent::compile(&engine, b"not wasm at all"),
        Err(LoadError::NotAComponent(_))
    ));
    // A component with no imports but no exports either does not fit the world.
    let empty = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        PluginComponent::compile(&engine, &empty),
        Err(LoadError::Contract(_))
    ));
}

#[tokio::test]
async fn plugin_configured_for_another_provider_is_refused() {
    let toml = config("").providers["hostile"].clone();
    let mut c = config("");
    let mut p = toml;
    p.id = "mfs-africa".into();
    c.providers.clear();
    c.providers.insert("mfs-africa".into(), p);
    match Providers::start(&c).await {
        Err(refundry_service::StartError::Plugin {
            source: RegistryError::Rejected(LoadError::ProviderMismatch { expected, found }),
            ..
        }) => {
            assert_eq!(
                (expected.as_str(), found.as_str()),
                ("mfs-africa", "hostile")
            );
        }
        Err(other) => panic!("expected ProviderMismatch, got {other}"),
        Ok(_) => panic!("a hostile plugin was accepted as mfs-africa"),
    }
}

/// A provider whose plugin says it answers no status queries (a callback-only provider) is
/// never asked for a refund's status: the janitor notes why and leaves the refund to webhooks
/// and reconciliation.
#[tokio::test]
async fn a_callback_only_provider_is_not_asked_for_statuses() {
    let mut config = refundry_tests::hostile_config("", "hostile-secret-value");
    config.providers.get_mut("hostile").unwrap().plugin =
        refundry_tests::plugin_path("hostile-callback-only");
    config.janitor.backoff = vec![std::time::Duration::from_millis(1)];
    let service = refundry_service::refunds::RefundService::start(&config)
        .await
        .expect("service starts");
    let info = service.providers().provider("hostile").unwrap();
    assert!(!info.logic.info().status_queries);
    assert_eq!(info.logic.info().reversal_window_days, Some(3));
    let created = service
        .create(refundry_service::refunds::NewRefund {
            provider: "hostile".into(),
            external_refund_id: "cb-1".into(),
            original_transaction_id: "txn-cb".into(),
            amount: 100,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original: None,
        })
        .await
        .expect("created");
    let id = created.refund.id;
    let noted = |detail: &refundry_ledger::RefundDetail| {
        detail
            .history
            .iter()
            .any(|h| h.detail.as_deref() == Some("no status queries at this provider"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        service.janitor_pass().await.unwrap();
        let detail = service.ledger().get(&id).await.unwrap().unwrap();
        if noted(&detail) {
            assert_eq!(detail.refund.status, refundry_ledger::Status::Pending);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the janitor never looked at {id}: {:?}",
            detail.history
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
