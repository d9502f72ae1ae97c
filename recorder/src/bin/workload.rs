//! `perfpack-test-workload SECONDS`: the recorder's live tests profile this. It spins in a
//! uniquely named function, `perfpack_test_hot_loop`, called through `perfpack_test_outer`, so a
//! test can check that samples of this process symbolize to those names.

use std::time::{Duration, Instant};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut x = 1u64;
    while Instant::now() < deadline {
        x = perfpack_test_outer(x);
    }
    println!("{x}");
}

#[inline(never)]
fn perfpack_test_outer(x: u64) -> u64 {
    perfpack_test_hot_loop(std::hint::black_box(x))
}

/// The hot function the tests look for (unmangled, so its name is exact).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn perfpack_test_hot_loop(x: u64) -> u64 {
    let mut y = x;
    for i in 0..200_000u64 {
        y = std::hint::black_box(y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    y
}
