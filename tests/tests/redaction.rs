//! A provider whose error message echoes a configured secret: the secret comes back through no
//! output at all (the `POST /v1/refunds` answer, `GET /v1/refunds/{id}`, the CSV export, the
//! outbound event, the command line), and the redaction marker stands where it was, because the
//! host removes it where it takes the plugin's answer.

use std::time::Duration;

use refundry_tests::receiver::Receiver;
use refundry_tests::service::{
    MFS, Options, PE, Service, expect, mfs_body, pe_body, run_refundry, str_of as s, wait_until,
};
use serde_json::json;

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(30);

const MARKER: &str = "[redacted]";

/// Asserts that `text` (`what`) carries none of `secrets` and does carry the marker.
fn clean(what: &str, text: &str, secrets: &[(&str, String)]) {
    for (name, secret) in secrets {
        assert!(!text.contains(secret.as_str()), "{name} in {what}: {text}");
    }
    assert!(text.contains(MARKER), "no {MARKER} in {what}: {text}");
}

#[tokio::test]
async fn a_provider_message_echoing_a_secret_reaches_no_output() {
    let receiver = Receiver::start().await;
    let service = Service::start_with(Options {
        extra_toml: format!(
            "[events]\nurl = {:?}\nsecret = \"events-secret-0123456789abcdef\"\ninterval_ms = 25\n",
            receiver.url
        ),
        ..Options::default()
    })
    .await;
    service.mfs.seed("echo-txn", "500.00", "KES", 2, true).await;
    service.pe.seed("echo-pe", "500.00", "PEN", 2, true).await;
    let secrets = service.secrets();
    let mfs_secret = service.mfs.creds.api_secret.clone();
    let pe_key = service.pe.creds.access_key.clone();

    // A first refund each, so the next request a provider sees is the refund itself (the auth
    // token is cached).
    expect(
        &service
            .post_refund(&mfs_body("echo-txn", "echo-m0", 100))
            .await,
        201,
        "MFS Africa",
    );
    expect(
        &service
            .post_refund(&pe_body("echo-pe", "echo-p0", 100))
            .await,
        201,
        "PagoEfectivo",
    );

    // Each provider refuses the next refund with a message that echoes its credential.
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "error", "status": 422, "code": "amount_exceeded",
                   "message": format!("amount exceeded for api secret {mfs_secret}")}),
        )
        .await;
    service
        .pe
        .control
        .post(
            "faults",
            json!({"kind": "error", "status": 422, "code": "132",
                   "message": format!("monto excedido, accessKey={pe_key}")}),
        )
        .await;
    let mut ids = Vec::new();
    for (body, what) in [
        (mfs_body("echo-txn", "echo-m1", 100), MFS),
        (pe_body("echo-pe", "echo-p1", 100), PE),
    ] {
        let reply = service.post_refund(&body).await;
        expect(&reply, 422, what);
        clean(&format!("{what} POST answer"), &reply.text, &secrets);
        assert_eq!(reply.refund()["status"], "failed", "{}", reply.text);
        ids.push(s(&reply.refund()["id"]).to_owned());
    }

    for id in &ids {
        let reply = service.get(&format!("/v1/refunds/{id}")).await;
        expect(&reply, 200, "GET");
        clean(&format!("GET {id}"), &reply.text, &secrets);
    }

    let csv = service.get("/v1/refunds?format=csv").await;
    expect(&csv, 200, "CSV export");
    clean("the CSV export", &csv.text, &secrets);

    let failed_events = || {
        receiver
            .received()
            .into_iter()
            .filter(|r| {
                r.json["type"] == "refund.failed"
                    && ids.iter().any(|id| r.json["data"]["id"] == id.as_str())
            })
            .collect::<Vec<_>>()
    };
    wait_until("both failed events delivered", T, || async {
        let got = failed_events();
        ids.iter()
            .all(|id| got.iter().any(|r| r.json["data"]["id"] == id.as_str()))
    })
    .await;
    for event in failed_events() {
        let body = String::from_utf8(event.body).unwrap();
        clean("an outbound event body", &body, &secrets);
    }

    // The command line, making a refund itself (one-shot, against the same ledger) and reading
    // the ledger.
    service
        .mfs
        .control(
            "faults",
            json!({"kind": "error", "status": 422, "code": "amount_exceeded",
                   "message": format!("amount exceeded for api secret {mfs_secret}")}),
        )
        .await;
    let config = service.config_path().to_str().unwrap().to_owned();
    let create = run_refundry(
        &[
            "--config",
            &config,
            "refund",
            "create",
            "--provider",
            MFS,
            "--original-transaction-id",
            "echo-txn",
            "--amount",
            "1.00",
            "--currency",
            "KES",
            "--external-refund-id",
            "echo-cli",
        ],
        &[],
        T,
    )
    .await;
    assert_eq!(create.code, Some(1), "a refusal exits 1: {}", create.show());
    clean("refund create's output", &create.show(), &secrets);
    let export = run_refundry(&["--config", &config, "export", "--format", "csv"], &[], T).await;
    export.expect_code(0, "export");
    clean("refundry export", &export.show(), &secrets);
}
