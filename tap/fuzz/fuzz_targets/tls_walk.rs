#![no_main]
//! See `tap::fuzzing::fuzz_tls_walk`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tap::fuzzing::fuzz_tls_walk(data));
