//! The collector's zipkin decoder: any bytes give spans or an error answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = collector::format::fuzzing::zipkin(data);
});
