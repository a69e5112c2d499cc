#![no_main]
//! See `tap::fuzzing::fuzz_smtp_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tap::fuzzing::fuzz_smtp_stream(data));
