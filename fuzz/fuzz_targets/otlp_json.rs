//! The collector's otlp_json decoder: any bytes give spans or an error answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = collector::format::fuzzing::otlp_json(data);
});
