//! Protocols: HTTP/2 (h2c and over TLS with ALPN), certificates chosen by SNI,
//! WebSocket upgrades, and bodies streamed both ways without being buffered whole.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn http2_clients_are_served_over_h2c() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  hosts: [h2.example]\n  rules: [{{backends: [{{url: '{}'}}]}}]",
                upstream.url()
            ),
        ))
        .await;
    let request = Request::get(format!(
        "http://h2.example:{}/x",
        proxy.addresses.traffic.port()
    ))
    .version(Version::HTTP_2)
    .body(Full::<Bytes>::default())
    .unwrap();
    // Connect to the proxy whatever the URI says.
    let stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let seen = &upstream.requests()[0];
    assert_eq!(
        seen.headers["host"],
        format!("h2.example:{}", proxy.addresses.traffic.port()),
        "HTTP/1.1 upstreams get a Host"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn h2c_backends_get_http2() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: 'h2c://{}'}}]}}]",
                upstream.addr
            ),
        ))
        .await;
    assert_eq!(get(&proxy.url("/"), "x").await.status, StatusCode::OK);
    assert_eq!(upstream.requests()[0].version, Version::HTTP_2);
    proxy.stop().await;
}

struct Site {
    host: &'static str,
    cert: CertificateDer<'static>,
    yaml: String,
}

fn site(host: &'static str, secret: &str) -> Site {
    let (secret_yaml, cert) = tls_secret(host, secret);
    let yaml = format!(
        "{secret_yaml}{}",
        route(
            secret,
            &format!(
                "  hosts: ['{host}']\n  tls: {{secretName: {secret}}}\n  rules: [{{directResponse: {{status: 200, body: '{host}'}}}}]"
            )
        )
    );
    Site { host, cert, yaml }
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_and_alpn_offers_http2() {
    let a = site("a.example", "a-cert");
    let b = site("b.example", "b-cert");
    let proxy = TestProxy::start(|c| c.tls_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    proxy.apply_yaml(&format!("{}{}", a.yaml, b.yaml)).await;
    for site in [&a, &b] {
        let (presented, alpn, tls) = tls_connect(&proxy, site.host, &site.cert).await;
        assert_eq!(presented, site.cert, "{}", site.host);
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::get(format!("https://{}/", site.host))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, site.host);
    }
    proxy.stop().await;
}

/// A WebSocket server on loopback answering each text message `m` with `echo: m`.
async fn websocket_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() {
                        let reply = format!("echo: {}", message.into_text().unwrap());
                        if socket.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket to `ws://chat.example/socket` through the proxy.
async fn websocket_through(proxy: &TestProxy) -> WebSocket {
    let stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async("ws://chat.example/socket", stream)
        .await
        .expect("upgrade through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// Sends `word` and expects its echo.
async fn echoes(socket: &mut WebSocket, word: &str) {
    socket.send(Message::text(word)).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("echo in time")
        .expect("socket open")
        .expect("a message");
    assert_eq!(reply.into_text().unwrap(), format!("echo: {word}"));
}

/// Waits until the proxy closes `socket`, and says whether it did within patience.
async fn closed_by_proxy(socket: &mut WebSocket) -> bool {
    let read_all = async {
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all).await.is_ok()
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let upstream_addr = websocket_echo().await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: 'http://{upstream_addr}'}}]}}]"),
        ))
        .await;
    let mut socket = websocket_through(&proxy).await;
    for word in ["one", "two"] {
        echoes(&mut socket, word).await;
    }
    // An open tunnel would hold the shutdown for the drain timeout.
    drop(socket);
    proxy.stop().await;
}

/// Only the upgrades a rule allows reach the upstream (WebSocket unless the rule says
/// otherwise), and never h2c: an h2c upgrade tunnelled to the backend would let a client
/// speak HTTP/2 to it past the proxy's routing and plugins. A refused upgrade goes
/// upstream as a plain request, without `Upgrade`.
#[tokio::test]
async fn upgrades_only_to_protocols_the_rule_allows() {
    let upstream = Upstream::start(|seen| async move {
        match seen.headers.get("upgrade") {
            Some(_) => text(StatusCode::UPGRADE_REQUIRED, "upgrade seen"),
            None => text(StatusCode::OK, "plain"),
        }
    })
    .await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules:
  - backends: [{{url: '{0}'}}]
  - matches: [{{path: {{value: /udp}}}}]
    backends: [{{url: '{0}'}}]
    upgrades: [connect-udp]",
                upstream.url()
            ),
        ))
        .await;
    let cases = [
        ("/", "websocket", "upgrade seen"),
        ("/", "h2c", "plain"),
        ("/", "websocket, h2c", "plain"),
        ("/", "foo", "plain"),
        ("/udp", "connect-udp", "upgrade seen"),
        ("/udp", "websocket", "plain"),
    ];
    for (path, protocols, expected) in cases {
        let request = Request::get(proxy.url(path))
            .header("host", "app.example")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", protocols)
            .header("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA")
            .body(Full::default())
            .unwrap();
        let answer = send(&client(), request).await;
        assert_eq!(answer.text(), expected, "{path} upgrading to {protocols}");
        let seen = upstream.requests().pop().unwrap();
        assert!(
            !seen.headers.contains_key("http2-settings"),
            "{path} {protocols}: {:?}",
            seen.headers
        );
    }
    proxy.stop().await;
}

/// A tunnel that carries nothing either way for the rule's `tunnelIdle` is closed; one
/// in use stays open past it.
#[tokio::test]
async fn idle_tunnels_are_closed() {
    let upstream_addr = websocket_echo().await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: 'http://{upstream_addr}'}}], timeouts: {{tunnelIdle: 2s}}}}]"
            ),
        ))
        .await;
    let mut socket = websocket_through(&proxy).await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        echoes(&mut socket, "busy").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        closed_by_proxy(&mut socket).await,
        "an idle tunnel stays open"
    );
    proxy.stop().await;
}

/// Shutdown waits for open tunnels (up to the drain timeout) instead of cutting them.
#[tokio::test]
async fn shutdown_lets_tunnels_finish() {
    let upstream_addr = websocket_echo().await;
    let mut proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: 'http://{upstream_addr}'}}]}}]"),
        ))
        .await;
    let mut socket = websocket_through(&proxy).await;
    echoes(&mut socket, "before").await;
    let stopping = proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    echoes(&mut socket, "during the drain").await;
    assert!(
        !stopping.is_finished(),
        "the proxy stopped with a tunnel open"
    );
    socket.close(None).await.unwrap();
    drop(socket);
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the proxy stops once its tunnels end")
        .unwrap();
}

const CHUNK: usize = 64 * 1024;

/// Bodies travel as they are produced: the upstream sees the first chunk of an upload
/// before the client has sent the rest, and the client sees the first chunk of a
/// download before the upstream has produced the rest. A proxy that buffered whole bodies
/// would deadlock here (and fail on the timeout).
#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    let (first_upload_chunk_tx, first_upload_chunk_rx) = oneshot::channel::<()>();
    let (download_ack_tx, download_ack_rx) = oneshot::channel::<()>();
    let first_upload_chunk_tx = Arc::new(std::sync::Mutex::new(Some(first_upload_chunk_tx)));
    let download_ack_rx = Arc::new(tokio::sync::Mutex::new(Some(download_ack_rx)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let first_upload_chunk_tx = first_upload_chunk_tx.clone();
            let download_ack_rx = download_ack_rx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let first_upload_chunk_tx = first_upload_chunk_tx.clone();
                    let download_ack_rx = download_ack_rx.clone();
                    async move {
                        if request.uri().path() == "/upload" {
                            let mut body = request.into_body();
                            let mut total = 0usize;
                            while let Some(frame) = body.frame().await {
                                if let Some(data) = frame.unwrap().data_ref() {
                                    total += data.len();
                                    if let Some(tx) = first_upload_chunk_tx.lock().unwrap().take() {
                                        let _ = tx.send(());
                                    }
                                }
                            }
                            let response: Response<
                                http_body_util::combinators::BoxBody<Bytes, Infallible>,
                            > = Response::new(BodyExt::boxed(Full::new(Bytes::from(
                                total.to_string(),
                            ))));
                            return Ok::<_, Infallible>(response);
                        }
                        // Download: one chunk, wait for the client to have it, then the rest.
                        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                        let ack = download_ack_rx.lock().await.take();
                        tokio::spawn(async move {
                            tx.send(Ok(Frame::data(Bytes::from(vec![b'd'; CHUNK]))))
                                .await
                                .unwrap();
                            if let Some(ack) = ack {
                                let _ = ack.await;
                            }
                            for _ in 0..511 {
                                if tx
                                    .send(Ok(Frame::data(Bytes::from(vec![b'd'; CHUNK]))))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        });
                        let body = BodyExt::boxed(StreamBody::new(tokio_stream_from(rx)));
                        Ok(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let proxy = TestProxy::start(|c| c.limits.max_body_bytes = 64 * 1024 * 1024).await;
    proxy.apply_yaml(&route("r", &format!("  rules: [{{backends: [{{url: 'http://{upstream_addr}'}}], timeouts: {{request: 1m}}}}]"))).await;

    // Upload 16 MiB: the first chunk must reach the upstream while the rest is unsent.
    let (body_tx, body_rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let upload = Request::post(proxy.url("/upload"))
        .body(StreamBody::new(tokio_stream_from(body_rx)))
        .unwrap();
    let client: hyper_util::client::legacy::Client<_, StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::spawn(client.request(upload));
    body_tx
        .send(Ok(Frame::data(Bytes::from(vec![b'u'; CHUNK]))))
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, first_upload_chunk_rx)
        .await
        .expect("the first chunk arrived before the rest was sent")
        .unwrap();
    for _ in 0..255 {
        body_tx
            .send(Ok(Frame::data(Bytes::from(vec![b'u'; CHUNK]))))
            .await
            .unwrap();
    }
    drop(body_tx);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let received = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(received, (256 * CHUNK).to_string());

    // Download 32 MiB: the first chunk must reach the client before the rest is produced.
    let response = send_streaming(&proxy.url("/download")).await;
    let mut body = response.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("first chunk in time")
        .unwrap()
        .unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    download_ack_tx.send(()).unwrap();
    let mut total = first.data_ref().map_or(0, Bytes::len);
    while let Some(frame) = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("chunks keep coming")
    {
        total += frame.unwrap().data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(total, 512 * CHUNK);
    proxy.stop().await;
}

async fn send_streaming(url: &str) -> Response<Incoming> {
    let request = Request::get(url).body(Full::<Bytes>::default()).unwrap();
    tokio::time::timeout(PATIENCE, client().request(request))
        .await
        .unwrap()
        .unwrap()
}

fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn tls_connections_that_send_no_request_are_closed() {
    let a = site("a.example", "a-cert");
    let proxy = TestProxy::start(|c| {
        c.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.limits.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    proxy.apply_yaml(&a.yaml).await;
    // A handshake, then nothing: the header read timeout counts from the accept.
    let (_, _, mut tls) = tls_connect(&proxy, a.host, &a.cert).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    // No handshake at all.
    let mut silent = TcpStream::connect(proxy.addresses.tls.unwrap())
        .await
        .unwrap();
    let closed = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection without a handshake was not closed"
    );
    proxy.stop().await;
}

/// An HTTP/2 client written frame by frame, so it can do what no library client does:
/// send requests and then never read.
mod raw_http2 {
    /// The connection preface and SETTINGS offering the largest flow-control windows
    /// (so only the proxy's own limits hold back what it sends), then a GET of `path` on
    /// `streams` streams, each request alone in one HEADERS frame.
    pub fn greedy_requests(authority: &str, path: &str, streams: u32) -> Vec<u8> {
        const LARGEST_WINDOW: u32 = (1 << 31) - 1;
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE largest.
        let mut settings = Vec::new();
        settings.extend_from_slice(&[0, 2, 0, 0, 0, 0]);
        settings.extend_from_slice(&[0, 4]);
        settings.extend_from_slice(&LARGEST_WINDOW.to_be_bytes());
        frame(&mut bytes, 0x4, 0, 0, &settings);
        // WINDOW_UPDATE of the connection window to the largest.
        frame(
            &mut bytes,
            0x8,
            0,
            0,
            &(LARGEST_WINDOW - 65_535).to_be_bytes(),
        );
        for stream in 0..streams {
            // HPACK: :method GET (static 2), :scheme http (static 6), :path and
            // :authority as literals without indexing (static names 4 and 1).
            let mut block = vec![0x82, 0x86];
            literal(&mut block, 0x04, path);
            literal(&mut block, 0x01, authority);
            // END_STREAM | END_HEADERS on stream 2n+1.
            frame(&mut bytes, 0x1, 0x5, 2 * stream + 1, &block);
        }
        bytes
    }

    fn literal(block: &mut Vec<u8>, name_index: u8, value: &str) {
        block.push(name_index);
        block.push(u8::try_from(value.len()).expect("short header value"));
        block.extend_from_slice(value.as_bytes());
    }

    fn frame(bytes: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        bytes.extend_from_slice(&length[1..]);
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
    }
}

/// A client that opens many HTTP/2 streams, each for a large response, and reads none of
/// them holds a bounded share of the proxy's memory (the streams it may open times the
/// send buffer per stream), not the responses it asked for (here 1,000 of 4 MiB).
#[tokio::test]
async fn a_slow_http2_reader_holds_bounded_memory() {
    const RESPONSE_BYTES: usize = 4 << 20;
    const STREAMS: u32 = 1000;
    let body = Bytes::from(vec![b'x'; RESPONSE_BYTES]);
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move { Response::new(Full::new(body)) }
    })
    .await;
    let proxy = support::process::ProxyProcess::start(
        &route(
            "big",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", upstream.url()),
        ),
        &["--workers", "1"],
    );
    let before = proxy.rss_kib();
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut client,
        &raw_http2::greedy_requests("big.example", "/large", STREAMS),
    )
    .await
    .unwrap();
    // The proxy fetches the responses and queues what it cannot send; sample its memory
    // until it stops growing.
    let mut peak = before;
    let mut still_since = std::time::Instant::now();
    let started = std::time::Instant::now();
    while still_since.elapsed() < Duration::from_secs(3) && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = proxy.rss_kib();
        if now > peak + 1024 {
            peak = now;
            still_since = std::time::Instant::now();
        }
    }
    // Measured: +23 MiB with the default limits (128 streams, 32 KiB send buffers), +976
    // MiB with hyper's defaults as weir had them (1,000 streams, 400 KiB).
    let grown_mib = (peak - before) / 1024;
    eprintln!("proxy RSS {before} KiB before, {peak} KiB at peak: +{grown_mib} MiB");
    assert!(
        grown_mib < 64,
        "a client reading nothing made the proxy grow by {grown_mib} MiB"
    );
    drop(client);
}
