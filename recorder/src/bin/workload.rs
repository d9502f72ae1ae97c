//! `perfpack-test-workload SECONDS`: the recorder's live tests profile this. It spins in a
//! uniquely named function, `perfpack_test_hot_loop`, called through `perfpack_test_outer`, so a
//! test can check that samples of this process symbolize to those names.
//!
//! `perfpack-test-workload syscalls SECONDS`: one-byte writes to /dev/null as fast as it can
//! (hundreds of thousands of system calls a second, each two raw_syscalls events), and prints
//! how many.
//!
//! `perfpack-test-workload storm SECONDS [STOPFILE]`: starts itself (`exit`, which exits at
//! once) over and over, thousands of processes a second that each exec and exit, until SECONDS
//! pass or STOPFILE exists, and prints how many.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // A child of the storm: exits at once.
        Some("exit") => return,
        Some("storm") => {
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            return storm(secs, args.get(3).map(std::path::Path::new));
        }
        Some("syscalls") => {
            return syscalls(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0));
        }
        _ => {}
    }
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
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

/// Starts short-lived copies of this program from two threads until `secs` pass or `stop`
/// exists; prints how many ran.
fn storm(secs: f64, stop: Option<&std::path::Path>) {
    let me = std::env::current_exe().expect("own path");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let spawn = || {
        let mut n = 0u64;
        while Instant::now() < deadline && !stop.is_some_and(std::path::Path::exists) {
            let status = std::process::Command::new(&me)
                .arg("exit")
                .status()
                .expect("a copy starts");
            assert!(status.success());
            n += 1;
        }
        n
    };
    let n: u64 = std::thread::scope(|s| {
        let other = s.spawn(spawn);
        spawn() + other.join().expect("storm thread")
    });
    println!("{n}");
}

/// Writes one byte at a time to /dev/null until `secs` pass; prints how many writes.
fn syscalls(secs: f64) {
    use std::io::Write as _;
    let mut null = std::fs::File::create("/dev/null").expect("/dev/null opens");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            null.write_all(b"x").expect("a write to /dev/null");
        }
        n += 1000;
    }
    println!("{n}");
}
