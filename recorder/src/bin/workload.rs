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
        Some("demo") => {
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8.0);
            let dir = args.get(3).map_or_else(std::env::temp_dir, Into::into);
            return demo(secs, &dir);
        }
        Some("touch") => {
            let mib = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
            return touch(mib);
        }
        Some("demo-child") => {
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8.0);
            return demo_child(secs);
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

/// `demo SECS DIR`: what `./demo.sh` records, a little of everything the report shows. CPU in
/// named functions (parse 70%, checksum 30% of one thread), a child process compressing at half
/// duty, about 100 64 KiB writes a second, each followed by fsync, into `DIR` (block I/O and its
/// latency), and two threads that wake each other through a sleep/wakeup chain every 5 ms
/// (off-CPU stacks, run-queue latency).
fn demo(secs: f64, dir: &std::path::Path) {
    use std::io::Write as _;
    use std::sync::mpsc;
    let me = std::env::current_exe().expect("own path");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut child = std::process::Command::new(&me)
        .args(["demo-child", &secs.to_string()])
        .spawn()
        .expect("the demo's child starts");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x = 1u64;
            while Instant::now() < deadline {
                for _ in 0..7 {
                    x = perfpack_demo_parse(x);
                }
                for _ in 0..3 {
                    x = perfpack_demo_checksum(x);
                }
            }
            std::hint::black_box(x);
            // What the kernel counted for this thread: the truth its samples are checked with.
            println!("demo: parse/checksum thread CPU {:.3} s", thread_cpu_s());
        });
        s.spawn(|| {
            let path = dir.join(format!("perfpack-demo-{}.dat", std::process::id()));
            let mut f = std::fs::File::create(&path).expect("the demo's file opens");
            let chunk = vec![0x5au8; 64 << 10];
            let mut written = 0u64;
            while Instant::now() < deadline {
                f.write_all(&chunk).expect("a write");
                f.sync_data().expect("fsync");
                written += chunk.len() as u64;
                // About 100 writes a second: a latency distribution, not a disk benchmark.
                std::thread::sleep(Duration::from_millis(10));
                // Start over every 8 MiB: the file stays small.
                if written >= 8 << 20 {
                    f.set_len(0).expect("truncate");
                    std::io::Seek::rewind(&mut f).expect("rewind");
                    written = 0;
                }
            }
            drop(f);
            let _ = std::fs::remove_file(&path);
        });
        // The chain: each side sleeps 5 ms, then wakes the other and waits for its turn.
        let (to_b, from_a) = mpsc::channel::<u64>();
        let (to_a, from_b) = mpsc::channel::<u64>();
        s.spawn(move || {
            while let Ok(n) = from_a.recv() {
                std::thread::sleep(Duration::from_millis(5));
                if to_a.send(n + 1).is_err() {
                    break;
                }
            }
        });
        let mut n = 0;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            to_b.send(n).expect("the other side waits");
            n = perfpack_demo_wait_for_turn(&from_b);
        }
        drop(to_b);
    });
    let _ = child.wait();
}

/// Waits for the other side of the demo's chain (its off-CPU stack names it).
#[inline(never)]
#[unsafe(no_mangle)]
pub fn perfpack_demo_wait_for_turn(from: &std::sync::mpsc::Receiver<u64>) -> u64 {
    from.recv().unwrap_or(0)
}

/// The demo's child: compresses half of the time, sleeps the other half.
fn demo_child(secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut x = 7u64;
    while Instant::now() < deadline {
        let busy = Instant::now() + Duration::from_millis(20);
        while Instant::now() < busy {
            x = perfpack_demo_compress(x);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::hint::black_box(x);
}

/// The demo's hottest function.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn perfpack_demo_parse(x: u64) -> u64 {
    spin(x, 100_000)
}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn perfpack_demo_checksum(x: u64) -> u64 {
    spin(x ^ 0x9e37, 100_000)
}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn perfpack_demo_compress(x: u64) -> u64 {
    spin(x.rotate_left(7), 50_000)
}

#[inline(always)]
fn spin(x: u64, n: u64) -> u64 {
    let mut y = x;
    for i in 0..n {
        y = std::hint::black_box(y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    y
}

/// CPU time of the calling thread, s (the kernel's accounting).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer, which is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// `touch MIB`: writes one byte into every 4 KiB page of MIB MiB of fresh memory, under
/// `perfpack_test_touch_outer` → `perfpack_test_touch_pages`; prints the pages touched and the
/// minor faults the kernel counted for the process.
fn touch(mib: usize) {
    let pages = perfpack_test_touch_outer(mib);
    // SAFETY: rusage is plain integers, for which all zeros is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the pointer, which is valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    println!("touched {pages} pages, minflt {}", ru.ru_minflt);
}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn perfpack_test_touch_outer(mib: usize) -> usize {
    let len = mib << 20;
    let layout = std::alloc::Layout::from_size_align(len, 4096).expect("a layout");
    // SAFETY: the layout has a non-zero size; the memory is freed below with the same layout.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null(), "{mib} MiB");
    // SAFETY: `p` points to `len` bytes just allocated and owned here; nothing else sees them.
    // They are uninitialized, and are only written through the slice.
    let buf = unsafe { std::slice::from_raw_parts_mut(p.cast::<std::mem::MaybeUninit<u8>>(), len) };
    let pages = perfpack_test_touch_pages(buf);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(p, layout) };
    pages
}

/// Writes one byte per page: one page fault each (the allocation is fresh anonymous memory,
/// and transparent huge pages are off unless madvised).
#[inline(never)]
#[unsafe(no_mangle)]
pub fn perfpack_test_touch_pages(buf: &mut [std::mem::MaybeUninit<u8>]) -> usize {
    let mut pages = 0;
    for page in buf.chunks_mut(4096) {
        page[0].write(1);
        std::hint::black_box(&page[0]);
        pages += 1;
        // A short pause every MiB: the faults come at a pace the recorder's rings hold.
        if pages % 256 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    pages
}
