//! A backend for the end-to-end scenarios, started inside a network namespace with
//! `ip netns exec`: `weir-e2e-backend <address:port> <name>` answers every request with
//! `200`, the body `backend <name>` and the header `x-backend: <name>`, so a scenario sees
//! which endpoint served a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(name), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: weir-e2e-backend <address:port> <name>");
        return ExitCode::from(64);
    };
    let Ok(address) = address.parse::<SocketAddr>() else {
        eprintln!("weir-e2e-backend: {address:?} is not an address:port");
        return ExitCode::from(64);
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("weir-e2e-backend: listening on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("backend {name} listening on {address}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let response = hyper::Response::builder()
                    .header("x-backend", name.as_str())
                    .body(Full::new(Bytes::from(format!("backend {name}"))));
                async move { Ok::<_, Infallible>(response.expect("a valid response")) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
