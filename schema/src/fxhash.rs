//! The hasher of hot maps (the recorder's frame and callsite interning and per-thread caches,
//! the analyzer's block request matching and stack folding): rustc's Fx hash from the
//! maintained `rustc-hash` crate, chosen here once for both binaries. Keys come from the kernel
//! or a capture file, not from an attacker choosing collisions, so SipHash's protection is not
//! needed; nothing depends on a map's iteration order (outputs are sorted).

pub use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
