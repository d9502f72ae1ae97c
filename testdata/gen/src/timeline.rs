//! Per-CPU scheduling timelines: threads are woken, wait in the run queue, run their job, and
//! sleep. Context switches, wakeups, stack samples and system calls all derive from the same
//! timeline, so the tables agree with each other the way a real recording does.

use crate::Scenario;
use crate::rng::Rng;
use crate::world::{self, IDLE, Template, ThreadSpec};

/// One period of work of one thread on one CPU.
#[derive(Debug, Clone)]
pub struct Job {
    /// Index into the CPU's thread list.
    pub thread: usize,
    /// Index into the thread's templates.
    pub template: usize,
    pub waker_tid: i32,
    pub wake_ns: i64,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// What ran on one CPU.
#[derive(Debug)]
pub struct CpuTimeline {
    pub cpu: i32,
    pub threads: Vec<ThreadSpec>,
    /// Jobs in start order; they never overlap. The last ones may run past the end of the
    /// recording (their events after the end are not written).
    pub jobs: Vec<Job>,
}

impl CpuTimeline {
    /// The template and thread running at `ts`, or `None` when idle.
    pub fn running_at(&self, ts: i64) -> Option<(&ThreadSpec, &'static Template)> {
        let i = self.jobs.partition_point(|j| j.start_ns <= ts);
        let job = self.jobs[..i].last()?;
        (ts < job.end_ns).then(|| {
            let t = &self.threads[job.thread];
            (t, &t.templates[job.template])
        })
    }

    /// Nanoseconds of the window [from, to) that some job was running.
    pub fn busy_ns(&self, from: i64, to: i64) -> i64 {
        self.jobs
            .iter()
            .map(|j| (j.end_ns.min(to) - j.start_ns.max(from)).max(0))
            .sum()
    }
}

/// Builds the timeline of one CPU.
pub fn cpu_timeline(sc: &Scenario, cpu: i32, rng: &mut Rng) -> CpuTimeline {
    let threads = world::threads_of_cpu(cpu);
    let weights: Vec<u32> = threads.iter().map(|t| t.weight).collect();
    let end = sc.start_ns() + sc.duration_ns;
    let mut busy_until = vec![i64::MIN; threads.len()];
    let mut free_at = sc.start_ns();
    let mut jobs: Vec<Job> = Vec::new();
    let mut t = sc.start_ns() + rng.exp(sc.job_interval_ns) as i64;
    while t < end {
        let thread = rng.weighted(&weights);
        let tw: Vec<u32> = threads[thread].templates.iter().map(|t| t.weight).collect();
        let template = rng.weighted(&tw);
        let delay = if rng.unit() < 0.9 {
            rng.range(2_000, 60_000)
        } else {
            rng.range(500_000, 4_000_000)
        };
        let leaf = threads[thread].templates[template].leaf();
        let cycles = rng.range(1_000_000, 8_000_000) as f64 * sc.cost_of(leaf);
        let waker_tid = jobs
            .last()
            .filter(|j| j.end_ns > t)
            .map_or(0, |j| threads[j.thread].tid);
        let next = t + rng.exp(sc.job_interval_ns) as i64;
        // A thread still queued or running is woken when it next sleeps, so every arrival
        // becomes a job and the same seed does the same work at any frequency.
        let wake_ns = t.max(busy_until[thread]);
        let start_ns = (wake_ns + delay).max(free_at);
        let end_ns = start_ns + (cycles / sc.busy_mhz * 1e3) as i64;
        jobs.push(Job {
            thread,
            template,
            waker_tid,
            wake_ns,
            start_ns,
            end_ns,
        });
        free_at = end_ns;
        busy_until[thread] = end_ns;
        t = next;
    }
    CpuTimeline { cpu, threads, jobs }
}

/// A context switch.
#[derive(Debug, Clone)]
pub struct Switch {
    pub ts_ns: i64,
    pub cpu: i32,
    pub prev: (i32, String, i32),
    pub prev_state: &'static str,
    pub next: (i32, String, i32),
}

fn idle_of(cpu: i32) -> (i32, String, i32) {
    (0, format!("swapper/{cpu}"), 120)
}

/// The context switches of a timeline: idle ↔ job and job → job.
pub fn switches(tl: &CpuTimeline) -> Vec<Switch> {
    let mut out = Vec::new();
    let mut prev: Option<&Job> = None;
    let who = |j: &Job| {
        let t = &tl.threads[j.thread];
        (t.tid, t.comm.clone(), t.prio)
    };
    for j in &tl.jobs {
        match prev {
            Some(p) if p.end_ns == j.start_ns => out.push(Switch {
                ts_ns: j.start_ns,
                cpu: tl.cpu,
                prev: who(p),
                prev_state: "S",
                next: who(j),
            }),
            _ => {
                if let Some(p) = prev {
                    out.push(Switch {
                        ts_ns: p.end_ns,
                        cpu: tl.cpu,
                        prev: who(p),
                        prev_state: "S",
                        next: idle_of(tl.cpu),
                    });
                }
                out.push(Switch {
                    ts_ns: j.start_ns,
                    cpu: tl.cpu,
                    prev: idle_of(tl.cpu),
                    prev_state: "R",
                    next: who(j),
                });
            }
        }
        prev = Some(j);
    }
    if let Some(p) = prev {
        out.push(Switch {
            ts_ns: p.end_ns,
            cpu: tl.cpu,
            prev: who(p),
            prev_state: "S",
            next: idle_of(tl.cpu),
        });
    }
    out
}

/// A cpu-clock stack sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ts_ns: i64,
    pub cpu: i32,
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub exe: &'static str,
    pub template: &'static Template,
}

/// Samples at `freq_hz` on every CPU, idle included (as `perf record -a` does).
pub fn samples(sc: &Scenario, tl: &CpuTimeline, rng: &mut Rng) -> Vec<Sample> {
    let period = sc.sample_period_ns();
    let mut ts = sc.start_ns() + rng.range(0, period);
    let end = sc.start_ns() + sc.duration_ns;
    let mut out = Vec::new();
    while ts < end {
        let s = match tl.running_at(ts) {
            Some((t, template)) => Sample {
                ts_ns: ts,
                cpu: tl.cpu,
                pid: t.pid,
                tid: t.tid,
                comm: t.comm.clone(),
                exe: t.exe,
                template,
            },
            None => Sample {
                ts_ns: ts,
                cpu: tl.cpu,
                pid: 0,
                tid: 0,
                comm: format!("swapper/{}", tl.cpu),
                exe: "",
                template: &IDLE,
            },
        };
        out.push(s);
        ts += period + rng.range(-20_000, 20_000);
    }
    out
}

/// A system call enter or exit.
#[derive(Debug, Clone)]
pub struct Syscall {
    pub ts_ns: i64,
    pub cpu: i32,
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub name: &'static str,
    /// `None` on enter, the return value on exit.
    pub ret: Option<i64>,
    pub args: [u64; 6],
}

/// The system calls the jobs of a timeline make (one enter/exit pair per job whose stack shape
/// has one), inside the job's run time.
pub fn syscalls(tl: &CpuTimeline, rng: &mut Rng) -> Vec<Syscall> {
    let mut out = Vec::new();
    for j in &tl.jobs {
        let t = &tl.threads[j.thread];
        let Some(name) = t.templates[j.template].syscall else {
            continue;
        };
        let run = j.end_ns - j.start_ns;
        let enter = j.start_ns + run / 10;
        let exit = j.start_ns + run * 6 / 10;
        let fd = rng.range(5, 40) as u64;
        let ret = match name {
            "recvfrom" | "pread64" => 8192,
            "sendfile" => 65_536,
            "epoll_wait" => rng.range(1, 9),
            _ => 0,
        };
        let mut sc = Syscall {
            ts_ns: enter,
            cpu: tl.cpu,
            pid: t.pid,
            tid: t.tid,
            comm: t.comm.clone(),
            name,
            ret: None,
            args: [fd, 0x7ffd_0000_1000 + (fd << 12), 8192, 0, 0, 0],
        };
        out.push(sc.clone());
        sc.ts_ns = exit;
        sc.ret = Some(ret);
        out.push(sc);
    }
    out
}
