//! Scenario 5: a TLS Route with a `kubernetes.io/tls` Secret: HTTPS with SNI is served
//! with that certificate (and another host's SNI with its own); rotating the Secret makes
//! the proxy serve the new certificate without a restart.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use weir_e2e::Scenario;
use weir_e2e::http::get_tls;
use weir_e2e::objects;
use weir_e2e::scenario::OperatorOptions;
use weir_e2e::tls::{Authority, secret};

use crate::common::programmed;

const SECURE: &str = "secure.e2e.example";
const OTHER: &str = "other-secure.e2e.example";

#[tokio::test]
async fn s5_tls_by_sni_and_a_rotated_secret_without_restart() {
    let Some(mut scenario) = Scenario::start("s5").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, mut proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    let ca = Authority::new("weir e2e CA");
    let first = ca.issue(&[SECURE]);
    let other = ca.issue(&[OTHER]);
    objects::apply(&client, &ns, secret("secure-cert", &first)).await;
    objects::apply(&client, &ns, secret("other-cert", &other)).await;
    for (name, host, secret) in [
        ("secure", SECURE, "secure-cert"),
        ("other", OTHER, "other-cert"),
    ] {
        objects::apply(
            &client,
            &ns,
            json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": name},
                "spec": {"hosts": [host], "tls": {"secretName": secret},
                         "rules": [{"backends": [{"name": "web", "port": 80}]}]}
            }),
        )
        .await;
    }
    let _operator = scenario.operator(&OperatorOptions::new("s5"));

    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    for name in ["secure", "other"] {
        scenario
            .wait_for(&routes, name, timeout, programmed(1))
            .await;
    }
    let roots = [ca.certificate.clone()];
    let tls = proxy.tls;
    let served = |host: &'static str, expected: rustls::pki_types::CertificateDer<'static>| {
        let roots = roots.clone();
        async move { serves_certificate(tls, host, &roots, &expected).await }
    };
    scenario
        .wait_until(
            "HTTPS for secure with its certificate",
            Duration::from_secs(10),
            || served(SECURE, first.der.clone()),
        )
        .await;
    served(OTHER, other.der.clone())
        .await
        .unwrap_or_else(|e| scenario.fail(&format!("SNI {OTHER}: {e}")));

    // Rotation: a new key and certificate in the same Secret.
    let pid = proxy.process.pid();
    let rotated = ca.issue(&[SECURE]);
    objects::apply(&client, &ns, secret("secure-cert", &rotated)).await;
    let took = scenario
        .wait_until("the rotated certificate", Duration::from_secs(10), || {
            served(SECURE, rotated.der.clone())
        })
        .await;
    println!("s5: the rotated certificate was served after {took:?}");
    assert!(proxy.process.running(), "the proxy exited");
    assert_eq!(proxy.process.pid(), pid, "the proxy was restarted");
    served(OTHER, other.der.clone())
        .await
        .unwrap_or_else(|e| scenario.fail(&format!("SNI {OTHER} after the rotation: {e}")));
    // A Secret is not the Route's spec: still generation 1, programmed.
    for name in ["secure", "other"] {
        scenario
            .wait_for(&routes, name, timeout, programmed(1))
            .await;
    }
}

/// Whether HTTPS for `host` (SNI) is answered by the backend with certificate `expected`.
async fn serves_certificate(
    proxy: SocketAddr,
    host: &str,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    expected: &rustls::pki_types::CertificateDer<'static>,
) -> Result<(), String> {
    let response = get_tls(proxy, host, "/", roots)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    if response.status != 200 || response.body != "backend a" {
        return Err(format!("{host}: {} {:?}", response.status, response.body));
    }
    if response.certificate.as_ref() != Some(expected) {
        return Err(format!("{host}: served another certificate than expected"));
    }
    Ok(())
}
