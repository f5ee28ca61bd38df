//! W3C `baggage`: parsing never panics; what it keeps survives a round trip through the
//! header it sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracekit::propagation::Baggage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let baggage = Baggage::parse(text);
    if let Some(header) = baggage.header_value() {
        let again = Baggage::parse(header.to_str().unwrap_or_default());
        assert_eq!(baggage.len(), again.len());
    }
    let _ = Baggage::parse_lines(data.split(|b| *b == b'\n'));
});
