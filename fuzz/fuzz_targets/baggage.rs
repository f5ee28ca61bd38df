//! W3C `baggage`: parsing never panics; what it sends is a prefix of what it kept (members
//! are dropped whole from the end when their encoding would pass 8192 bytes: invalid
//! percent escapes decode to U+FFFD, which re-encodes as 9 bytes) and survives a round trip.
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
        assert!(again.len() <= baggage.len());
        assert!(baggage.iter().zip(again.iter()).all(|(a, b)| a == b));
    }
    let _ = Baggage::parse_lines(data.split(|b| *b == b'\n'));
});
