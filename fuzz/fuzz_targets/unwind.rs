#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| perfpack_recorder::harness::unwind(data));
