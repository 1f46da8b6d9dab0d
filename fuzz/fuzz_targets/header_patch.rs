//! The header patch applier (what a plugin's `ctx.upstream.headers` edits become): any
//! edits, as JSON, apply without panicking, and nothing they carry can put a line break
//! into a header.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weir_plugin_runtime::HeaderEdits;

fuzz_target!(|data: &[u8]| {
    let Ok(edits) = serde_json::from_slice::<HeaderEdits>(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-existing", HeaderValue::from_static("1"));
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    edits.apply_to_map(&mut headers);
    for (_, value) in &headers {
        assert!(!value.as_bytes().contains(&b'\n') && !value.as_bytes().contains(&b'\r'));
    }
    let mut list = vec![("x-existing".to_owned(), "1".to_owned())];
    edits.apply(&mut list);
});
