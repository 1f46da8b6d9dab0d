//! The manifest parser and the compiler (standalone mode's path from files to a
//! snapshot): any text parses or is refused without panicking, and compiling what parsed
//! is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_crds::manifest::{Document, Manifests, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut manifests = Manifests::default();
    for document in parse(text).into_iter().flatten() {
        if let Document::Object(object) = document {
            manifests.add(object);
        }
    }
    let first = weir_crds::compile(&manifests.inputs());
    let second = weir_crds::compile(&manifests.inputs());
    assert_eq!(first.snapshot.hash, second.snapshot.hash);
});
