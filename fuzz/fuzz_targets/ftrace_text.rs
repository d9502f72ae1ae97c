#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| perfpack_analyzer::harness::ftrace_text(data));
