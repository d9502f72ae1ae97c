//! Integration tests of the `perfpack` binary: one test binary, cases under `suite/`.

mod suite;
