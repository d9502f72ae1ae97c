//! Integration tests of `perfpack-record`: one binary, cases under `suite/`.

mod suite;
