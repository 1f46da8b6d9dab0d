//! `ctx.log` goes to `tracing`, tagged with the plugin and the request id, and `console.*`
//! tagged with the plugin. Its own test
//! binary, since it installs the process's global subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_logs_are_structured_and_tagged() {
    on_shard(async {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .init();
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/logger",
            r#"export default { beforeRequest(ctx) { ctx.log.warn("slow client", { ms: 1200 }); } };"#,
        )],
    )
    .await;
        let chain = chain(&loaded, &[("shop/logger", json!({}))]);
        expect_continue(runtime.before_request(&chain, request("/")).await.0);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .find(|line: &serde_json::Value| line["fields"]["message"] == "slow client")
            .unwrap_or_else(|| panic!("no log line in {text}"));
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["plugin"], "shop/logger");
        assert_eq!(line["fields"]["request_id"], "req-1");
        assert_eq!(line["fields"]["fields"], r#"{"ms":1200}"#);

        // console.* logs as the plugin, from the module's top level and from hooks.
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/console",
                r#"console.info("loading", { version: 2 });
                export default { beforeRequest(ctx) { console.error("failed:", 42, [1, "a"], new TypeError("bad")); } };"#,
            )],
        )
        .await;
        let console_chain = common::chain(&loaded, &[("shop/console", json!({}))]);
        expect_continue(runtime.before_request(&console_chain, request("/")).await.0);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line: &serde_json::Value| line["fields"]["source"] == "console")
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["plugin"], "shop/console");
        assert_eq!(lines[0]["fields"]["message"], r#"loading {"version":2}"#);
        assert_eq!(lines[1]["level"], "ERROR");
        let message = lines[1]["fields"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(r#"failed: 42 [1,"a"] TypeError: bad"#),
            "{message}"
        );
    });
}
