//! `refundry serve`'s connections end to end: slow and silent clients are cut at their
//! timeouts and never hold more than `[server] max_connections`, while refunds still go
//! through; and HTTPS with `[server.tls]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use refundry_tests::join_all;
use refundry_tests::service::{Options, Service, expect, mfs_body, run_refundry, wait_until};
use refundry_tests::tls::TestCert;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: debug builds on a busy 2-core machine.
const T: Duration = Duration::from_secs(30);

const CAP: usize = 16;
const TIMEOUT_MS: u64 = 500;

/// The connections `pid` has accepted on `port` and not yet closed: its sockets (by inode, from
/// `/proc/<pid>/fd`) whose local port is `port`, the listening socket left out.
#[cfg(target_os = "linux")]
fn open_connections(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    // A set of inodes, not a count of lines: the kernel walks its socket table anew for each
    // read of the file, so a socket can be listed twice while connections come and go.
    let mut open = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 0A: LISTEN.
            if local_port == Some(port) && *state != "0A" && inodes.contains(*inode) {
                open.insert(inode.to_string());
            }
        }
    }
    open.len()
}

/// Reads until the server closes the connection; what it sent. Panics after `within`.
async fn until_closed(mut socket: TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    match tokio::time::timeout(within, socket.read_to_end(&mut answer)).await {
        Err(_) => panic!("the server kept a stalled connection open for {within:?}"),
        Ok(Ok(_)) => {}
        // A reset after an unread request is a close too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading: {e}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_and_capped_while_refunds_go_through() {
    let service = Service::start_with(Options {
        server_toml: format!(
            "header_timeout_ms = {TIMEOUT_MS}\nbody_timeout_ms = {TIMEOUT_MS}\n\
             idle_timeout_ms = {TIMEOUT_MS}\nmax_connections = {CAP}\n"
        ),
        ..Options::default()
    })
    .await;
    let addr = service.url.trim_start_matches("http://").to_owned();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let pid = service.pid().unwrap();
    for n in 0..3 {
        service
            .mfs
            .seed(&format!("slow-txn-{n}"), "100.00", "KES", 2, true)
            .await;
    }

    // Watch the service's open connections for the whole test.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, most) = (done.clone(), most.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(open_connections(pid, port), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Far more stalled connections than the cap: silent ones, half-sent heads, half-sent
    // bodies (of an authorized refund request, so that the body is read).
    let mut silent = Vec::new();
    let mut half_heads = Vec::new();
    let mut half_bodies = Vec::new();
    for _ in 0..CAP {
        silent.push(TcpStream::connect(&addr).await.unwrap());
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /v1/refunds HTTP/1.1\r\nHost: x\r\nContent-Ty")
            .await
            .unwrap();
        half_heads.push(s);
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"provider\":",
            service.gateway_token
        );
        s.write_all(head.as_bytes()).await.unwrap();
        half_bodies.push(s);
    }

    // (a) Refunds go through meanwhile, each on a new connection (queued behind the stalled
    // ones until they are cut).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(T)
        .build()
        .unwrap();
    let refunds = (0..3).map(|n| {
        let (client, url, token) = (client.clone(), service.url.clone(), &service.gateway_token);
        async move {
            let started = Instant::now();
            let reply = client
                .post(format!("{url}/v1/refunds"))
                .bearer_auth(token)
                .json(&mfs_body(
                    &format!("slow-txn-{n}"),
                    &format!("slow-{n}"),
                    1_000,
                ))
                .send()
                .await
                .unwrap_or_else(|e| panic!("refund {n}: no answer: {e}"));
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.unwrap();
            (status, body, started.elapsed())
        }
    });
    let refunds = join(refunds).await;

    // (b) Every stalled connection is closed by the server: 48 of them, 16 at a time, each
    // within its 500 ms timeout of being accepted, so well within 30 s.
    let closes = silent
        .into_iter()
        .chain(half_heads)
        .map(|s| until_closed(s, T));
    let silent_and_heads = join(closes).await;
    for answer in &silent_and_heads {
        assert!(
            answer.is_empty(),
            "no answer to a request never sent: {answer}"
        );
    }
    let bodies = join(half_bodies.into_iter().map(|s| until_closed(s, T))).await;
    for answer in &bodies {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    for (status, body, took) in &refunds {
        assert_eq!(*status, 201, "{body} after {took:?}");
    }

    // (c) Never more open at once than the cap, and the cap was reached.
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= CAP,
        "{most} connections open at once, over the cap of {CAP}"
    );
    assert_eq!(
        most, CAP,
        "the stalled connections should have filled the cap"
    );

    // And afterwards the service answers at once.
    let reply = service.get("/healthz").await;
    expect(&reply, 200, "healthz after the slow clients");
}

/// Drives every future to completion concurrently; their outputs in order.
async fn join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    join_all(futures.into_iter().collect()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_survives_running_out_of_file_descriptors() {
    // A cap above what the file limit allows: accept itself fails (EMFILE) while the idle
    // connections hold every descriptor, and must recover once they are cut.
    let service = Service::start_with(Options {
        server_toml: format!("header_timeout_ms = {TIMEOUT_MS}\nidle_timeout_ms = {TIMEOUT_MS}\n"),
        open_files_limit: Some(128),
        ..Options::default()
    })
    .await;
    service.mfs.seed("fd-txn", "100.00", "KES", 2, true).await;
    let addr = service.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    wait_until("the service to run out of descriptors", T, || async {
        service.logs().contains("accepting a connection failed")
    })
    .await;
    // Every one is still accepted in turn, and cut at its timeout.
    for answer in join(idle.into_iter().map(|s| until_closed(s, T))).await {
        assert!(answer.is_empty(), "{answer}");
    }
    let reply = service
        .post_refund(&mfs_body("fd-txn", "fd-1", 1_000))
        .await;
    expect(&reply, 201, "a refund after running out of descriptors");
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let cert = TestCert::new();
    let service = Service::start_with(Options {
        tls: Some(cert.clone()),
        // The sandboxes' webhook clients do not trust the test authority.
        webhooks_to_service: false,
        ..Options::default()
    })
    .await;
    assert!(
        service.url.starts_with("https://127.0.0.1:"),
        "{}",
        service.url
    );
    service.mfs.seed("tls-txn", "100.00", "KES", 2, true).await;
    let reply = service
        .post_refund(&mfs_body("tls-txn", "tls-1", 5_000))
        .await;
    expect(&reply, 201, "a refund over HTTPS");
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(service.refund(&id).await["external_refund_id"], "tls-1");

    // Plain HTTP to the TLS port gets no answer.
    let plain = service.url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(T)
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    // Nor does a client that does not trust the certificate.
    let untrusting = reqwest::Client::new()
        .get(format!("{}/healthz", service.url))
        .timeout(T)
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_the_start_naming_the_file() {
    let dir = refundry_tests::service::fresh_dir();
    let cert = TestCert::new();
    let other = TestCert::new();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("other-key.pem"), &other.key_pem).unwrap();
    std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
    for (cert_file, key_file, named) in [
        ("missing.pem", "key.pem", "missing.pem"),
        ("junk.pem", "key.pem", "junk.pem"),
        ("cert.pem", "junk.pem", "junk.pem"),
        ("cert.pem", "other-key.pem", "other-key.pem"),
    ] {
        let config = dir.join("refundry.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\npath = \":memory:\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
                 [server.tls]\ncert = \"{cert_file}\"\nkey = \"{key_file}\"\n\
                 [server.tokens.gw]\ntoken = \"0123456789abcdef-gw\"\nscopes = [\"refunds\"]\n"
            ),
        )
        .unwrap();
        let run = run_refundry(&["--config", config.to_str().unwrap(), "serve"], &[], T).await;
        assert_eq!(run.code, Some(2), "{cert_file} {key_file}: {}", run.show());
        assert!(run.stderr.contains("server.tls"), "{}", run.show());
        assert!(run.stderr.contains(named), "{}", run.show());
        assert!(!run.stderr.contains("PRIVATE KEY"), "{}", run.show());
        assert!(run.stdout.is_empty(), "{}", run.show());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
