#![no_main]
//! See `tap::fuzzing::fuzz_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tap::fuzzing::fuzz_message(data));
