//! Snapshots replaced under continuous load: every request succeeds, each on a whole
//! snapshot (never a mix), and requests in flight finish on the snapshot they started
//! with. Then graceful shutdown: in-flight requests finish, new connections are refused.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failed_requests_while_snapshots_are_replaced() {
    let blue = Upstream::named("blue").await;
    let green = Upstream::named("green").await;
    let proxy = Arc::new(TestProxy::start(|_| {}).await);
    let yaml = |upstream: &Upstream, colour: &str| {
        route(
            "r",
            &format!(
                "  rules:\n  - matches: [{{path: {{value: /app}}}}]\n    backends: [{{url: '{}'}}]\n  - matches: [{{path: {{type: Exact, value: /colour}}}}]\n    directResponse: {{status: 200, body: {colour}}}",
                upstream.url()
            ),
        )
    };
    let (blue_yaml, green_yaml) = (yaml(&blue, "blue"), yaml(&green, "green"));
    proxy.apply_yaml(&blue_yaml).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for worker in 0..4u32 {
        let (proxy, stop, done) = (proxy.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let path = if worker.is_multiple_of(2) {
                    "/app"
                } else {
                    "/colour"
                };
                let request = http::Request::get(proxy.url(path))
                    .body(http_body_util::Full::default())
                    .unwrap();
                let answer = send(&c, request).await;
                if answer.status != StatusCode::OK
                    || !matches!(answer.text().as_str(), "blue" | "green")
                {
                    failures.push(format!("{} {}", answer.status, answer.text()));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for reload in 0..200u32 {
        proxy
            .apply_yaml(if reload.is_multiple_of(2) {
                &green_yaml
            } else {
                &blue_yaml
            })
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        done.load(Ordering::Relaxed) > 100,
        "load kept flowing: {}",
        done.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        !blue.requests().is_empty() && !green.requests().is_empty(),
        "both versions served"
    );
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_snapshot() {
    let (slow, gate) = Upstream::gated("old snapshot's upstream").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", slow.url()),
        ))
        .await;
    let url = proxy.url("/");
    let in_flight = tokio::spawn(async move { get(&url, "x").await });
    wait_for(|| !slow.requests().is_empty()).await;
    proxy
        .apply_yaml(&route(
            "r",
            "  rules: [{directResponse: {status: 200, body: new}}]",
        ))
        .await;
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "new");
    gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap().text(), "old snapshot's upstream");
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    let (slow, gate) = Upstream::gated("finished").await;
    let mut proxy = TestProxy::start(|c| c.drain_timeout = Duration::from_secs(60)).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", slow.url()),
        ))
        .await;
    let url = proxy.url("/");
    let traffic = proxy.addresses.traffic;
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&url, "x").await }
    });
    wait_for(|| !slow.requests().is_empty()).await;
    let stopping = proxy.begin_shutdown();
    // New connections are refused once the listener is closed.
    tokio::time::timeout(PATIENCE, async {
        while tokio::net::TcpStream::connect(traffic).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listener closes");
    assert!(
        !stopping.is_finished(),
        "the proxy waits for the request in flight"
    );
    gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap().text(), "finished");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("drained")
        .unwrap();
}
