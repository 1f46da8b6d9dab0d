//! The snapshot decoder (what a proxy does with a pushed body): never panics, and a
//! snapshot it accepts encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_crds::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&snapshot).expect("a decoded snapshot encodes");
    let again: Snapshot = serde_json::from_slice(&encoded).expect("and decodes again");
    assert_eq!(snapshot, again);
});
