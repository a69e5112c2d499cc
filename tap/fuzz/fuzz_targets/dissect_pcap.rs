#![no_main]
//! See `tap::fuzzing::fuzz_dissect_pcap`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tap::fuzzing::fuzz_dissect_pcap(data));
