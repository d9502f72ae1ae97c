#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| perfpack_analyzer::harness::perf_data(data));
