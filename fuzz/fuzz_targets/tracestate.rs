//! W3C `tracestate`: parsing never panics, and what it keeps parses back to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracekit::propagation::TraceState;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let state = TraceState::parse(text);
    let again = TraceState::parse(state.as_str());
    assert_eq!(state.as_str(), again.as_str());
    let _ = TraceState::parse_lines(data.split(|b| *b == b'\n'));
});
