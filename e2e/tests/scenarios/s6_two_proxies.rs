//! Scenario 6: two proxies both receive every snapshot; with one stopped, `Programmed`
//! names the proxy that lags; started again, it catches up.

use std::time::Duration;

use weir_e2e::Scenario;
use weir_e2e::objects::{self, message};
use weir_e2e::scenario::OperatorOptions;

use crate::common::{answers, current, expect, programmed, route};

const HOST: &str = "both.e2e.example";

fn answer(body: &str) -> serde_json::Value {
    serde_json::json!([{"directResponse": {"status": 200, "body": body}}])
}

#[tokio::test]
async fn s6_a_stopped_proxy_lags_by_name_and_catches_up() {
    let Some(mut scenario) = Scenario::start("s6").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let a = scenario.proxy("a").await;
    let mut b = scenario.proxy("b").await;
    scenario.publish_proxies(&[&a, &b]).await;
    let client = scenario.client.clone();
    objects::apply(&client, &ns, route("both", HOST, answer("first"))).await;
    let _operator = scenario.operator(&OperatorOptions::new("s6"));

    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&routes, "both", timeout, programmed(2))
        .await;
    for proxy in [&a, &b] {
        scenario
            .wait_until(
                "both proxies serve the first version",
                Duration::from_secs(10),
                || answers(proxy.traffic, HOST, "first"),
            )
            .await;
    }

    // b stops (its endpoint stays listed: nothing tells the API server); a new version.
    assert!(
        b.process.stop(Duration::from_secs(5)),
        "proxy b did not exit within 5 s of SIGTERM"
    );
    objects::apply(&client, &ns, route("both", HOST, answer("second"))).await;
    let lagging = b.admin.ip().to_string();
    let (both, _) = scenario
        .wait_for(&routes, "both", timeout, |r| {
            current(r)?;
            expect(r, "Programmed", "False", "Pending")?;
            let said = message(r, "Programmed");
            if said.starts_with("applied on 1/2 proxies") && said.contains(&lagging) {
                Ok(())
            } else {
                Err(format!(
                    "Programmed says {said:?}: not applied on 1/2 with {lagging} lagging"
                ))
            }
        })
        .await;
    assert_eq!(both.metadata.generation, Some(2));
    println!(
        "s6: with b stopped, Programmed says {:?}",
        message(&both, "Programmed")
    );
    assert!(
        !message(&both, "Programmed").contains(&a.admin.ip().to_string()),
        "the proxy that applied it is not named as lagging"
    );
    scenario
        .wait_until(
            "a serves the second version",
            Duration::from_secs(10),
            || answers(a.traffic, HOST, "second"),
        )
        .await;

    // b comes back at the same address and catches up.
    scenario.restart_proxy(&mut b).await;
    let (_, took) = scenario
        .wait_for(&routes, "both", timeout, programmed(2))
        .await;
    println!("s6: b caught up {took:?} after it was started again");
    for proxy in [&a, &b] {
        scenario
            .wait_until(
                "both proxies serve the second version",
                Duration::from_secs(10),
                || answers(proxy.traffic, HOST, "second"),
            )
            .await;
    }
}
