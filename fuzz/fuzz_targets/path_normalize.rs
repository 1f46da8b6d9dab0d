//! Path normalization: never panics, and what it gives is in normal form (starts with
//! `/`, no empty, `.` or `..` segments, no raw `;` or backslash) and stays the same when
//! normalized again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_crds::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(raw) else {
        return;
    };
    assert!(normal.starts_with('/'), "{raw:?} -> {normal:?}");
    assert!(!normal.contains("//"), "{raw:?} -> {normal:?}");
    assert!(!normal.contains(['\\', ';']), "{raw:?} -> {normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{raw:?} -> {normal:?}");
    }
    assert_eq!(
        normalize(&normal).as_deref(),
        Ok(normal.as_str()),
        "{raw:?}"
    );
});
