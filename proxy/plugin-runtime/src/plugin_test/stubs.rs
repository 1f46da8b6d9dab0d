//! `t.fetch`: the plugin under test fetches from answers its test stubbed, never from the
//! network, and the test sees every fetch the plugin made.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::services::crypto::{self, Encoding};
use crate::services::fetch::{FetchError, FetchRequest, FetchResponse, HttpClient};

/// The stubbed answers of the running test and the fetches made.
#[derive(Default)]
pub(super) struct FetchStubs {
    state: Mutex<StubState>,
}

#[derive(Default)]
struct StubState {
    /// Later stubs of the same URL (and method) win.
    stubs: Vec<Stub>,
    calls: Vec<FetchRequest>,
}

struct Stub {
    url: String,
    /// `None`: any method.
    method: Option<String>,
    answer: StubAnswer,
}

/// What a stub answers (`t.fetch.stub(url, answer)`).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct StubAnswer {
    /// Default 200.
    status: Option<u16>,
    headers: BTreeMap<String, String>,
    /// Text as it is; any other JSON value as JSON (with `content-type: application/json`).
    body: Option<Value>,
    /// Bytes, as base64 (the suite's prelude turns a `Uint8Array` body into this).
    #[serde(rename = "bodyBase64")]
    body_base64: Option<String>,
    /// Fail the fetch with this message instead (a refused connection, a timeout).
    error: Option<String>,
}

impl FetchStubs {
    /// Answers fetches of `url` (by `method`, or any) with `answer`.
    pub(super) fn stub(&self, url: String, method: Option<String>, answer: StubAnswer) {
        let method = method.map(|m| m.to_uppercase());
        self.lock().stubs.push(Stub {
            url,
            method,
            answer,
        });
    }

    /// The fetches made since the test began, in order.
    pub(super) fn calls(&self) -> Vec<FetchRequest> {
        self.lock().calls.clone()
    }

    /// Forgets stubs and calls (between tests).
    pub(super) fn clear(&self) {
        *self.lock() = StubState::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StubState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HttpClient for FetchStubs {
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> LocalBoxFuture<'_, Result<FetchResponse, FetchError>> {
        let mut state = self.lock();
        let method = request.method.to_uppercase();
        let answer = state
            .stubs
            .iter()
            .rev()
            .find(|stub| {
                stub.url == request.url && stub.method.as_ref().is_none_or(|m| *m == method)
            })
            .map(|stub| stub.answer.clone());
        let url = request.url.clone();
        state.calls.push(request);
        drop(state);
        Box::pin(async move {
            let answer = answer.ok_or_else(|| {
                FetchError::Failed(format!(
                    "no stub answers {method} {url}: `t.fetch.stub(url, response)` gives one \
                     (plugin tests never reach the network)"
                ))
            })?;
            if let Some(error) = answer.error {
                return Err(FetchError::Failed(error));
            }
            let mut headers: BTreeMap<String, String> = answer
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_lowercase(), value))
                .collect();
            let body = match (answer.body, answer.body_base64) {
                (_, Some(base64)) => crypto::decode(&base64, Encoding::Base64)
                    .map_err(|e| FetchError::Invalid(format!("the stub's body: {e}")))?,
                (None, None) => Vec::new(),
                (Some(Value::String(text)), None) => text.into_bytes(),
                (Some(json), None) => {
                    headers
                        .entry("content-type".into())
                        .or_insert_with(|| "application/json".into());
                    json.to_string().into_bytes()
                }
            };
            Ok(FetchResponse::new(
                answer.status.unwrap_or(200),
                headers,
                body,
            ))
        })
    }
}
