//! W3C `traceparent`: parsing never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = tracekit::propagation::parse_traceparent_bytes(data) {
        let _ = format!("{parsed:?}");
    }
});
