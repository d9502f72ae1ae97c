//! The capture loop of a recording: enabling the sources, draining the rings, reading the
//! counters each interval, keeping to the CPU budget, and the status line.

use super::*;

impl Capture {
    pub(super) fn run(&mut self) -> anyhow::Result<()> {
        if let Some(s) = &self.sampler {
            s.enable().context("enabling the sampler")?;
            // Processes that started between the /proc snapshot and now have no fork, exec or
            // mmap records (the events were not on yet): read them now, or their samples would
            // have no name and no mappings. Later ones come with their records.
            let profile = &self.profile;
            let late = procfs::snapshot_except(self.boot_to_mono, |pid| profile.knows(pid));
            // And the processes of the snapshot mapped files meanwhile (a program starting up
            // loads its libraries): python3 started just before a recording had 42% of its
            // stacks end at once in a library mapped in that window.
            let again = procfs::snapshot_except(self.boot_to_mono, |pid| !profile.knows(pid));
            let now = sys::clock_ns(libc::CLOCK_MONOTONIC);
            self.profile.seed(&late, now);
            self.profile.add_new_maps(&again);
        }
        // Said once every source is on, so a caller waiting for it knows recording has begun.
        match &self.launch {
            Some(l) => eprintln!(
                "perfpack-record: recording {} while the command runs (pid {}; Ctrl-C goes to it)",
                self.cfg.output.display(),
                l.pid
            ),
            None => eprintln!(
                "perfpack-record: recording {} for {:?} (Ctrl-C stops early)",
                self.cfg.output.display(),
                self.cfg.duration
            ),
        }
        if let Some(l) = &mut self.launch
            && let Err(why) = l.release()
        {
            self.command_failed = Some(why);
            return Ok(());
        }
        let began = Instant::now();
        let t0 = sys::clock_ns(libc::CLOCK_MONOTONIC);
        self.loop_start_ns = t0;
        self.read_counters(t0);
        let mut next_read = began + self.cfg.interval;
        let mut next_segment = began + self.cfg.segment;
        let mut next_progress = began;
        let deadline = began + self.cfg.duration;
        let tty = std::io::stderr().is_terminal();
        let mut sorter = Sorter::default();
        let mut chain = Vec::new();
        let mut timeout_ms = 100;
        // What each source costs the loop, read only when a budget will weigh it (the poll's
        // wait costs no CPU).
        let weigh = self.budget.limit.is_some();
        let thread_cpu = || {
            if weigh {
                sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
            } else {
                0
            }
        };
        while !STOP.load(Ordering::SeqCst)
            && Instant::now() < deadline
            && self.launch.as_mut().is_none_or(|l| l.try_wait().is_none())
        {
            let c0 = thread_cpu();
            self.drain(&mut sorter, &mut chain, timeout_ms, false)?;
            let c1 = thread_cpu();
            // A busy ftrace buffer is read again soon (Perfetto's heuristic); an idle one waits.
            let pages = self.ftrace.as_mut().map_or(0, Ftrace::drain);
            let c2 = thread_cpu();
            self.budget.sampler_s += (c1 - c0) as f64 / 1e9;
            self.budget.ftrace_s += (c2 - c1) as f64 / 1e9;
            timeout_ms = if pages > 1 { 10 } else { 100 };
            let now = Instant::now();
            if now >= next_read {
                // A read more than one interval late means the loop fell behind.
                self.missed_polls +=
                    ((now - next_read).as_nanos() / self.cfg.interval.as_nanos()) as u64;
                self.read_counters(sys::clock_ns(libc::CLOCK_MONOTONIC));
                next_read = now + self.cfg.interval;
            }
            // A segment also closes early when its rows reach the memory budget.
            let buffered = self.writer.as_ref().map_or(0, BundleWriter::buffered_bytes)
                + self.ftrace.as_ref().map_or(0, Ftrace::buffered_bytes);
            if now >= next_segment || buffered > MAX_SEGMENT_BYTES {
                self.close_segment()?;
                next_segment = now + self.cfg.segment;
            }
            self.poll_closing()?;
            self.reap_children(false);
            if tty && now >= next_progress {
                self.progress(began.elapsed());
                next_progress = now + Duration::from_millis(500);
            }
        }
        if tty {
            eprint!("\r\x1b[K");
        }
        // Last drain after stopping the sampler, and a final counter read.
        if let Some(s) = &self.sampler {
            s.disable();
        }
        if let Some(f) = &mut self.ftrace {
            f.stop();
            while f.drain_all() > 0 {}
        }
        self.drain(&mut sorter, &mut chain, 0, true)?;
        self.read_counters(sys::clock_ns(libc::CLOCK_MONOTONIC));
        self.count_missed_event_samples();
        Ok(())
    }

    /// `--stack-event` samples the kernel counted events for but that never arrived and were
    /// never reported lost: a ring that overflows in a burst at the end gets no LOST record (the
    /// kernel writes one only when the ring next takes a record). Counted from each event's own
    /// count once everything is drained, less a period's worth per event opened (a last period
    /// not yet full) and the LOST records already counted.
    pub(super) fn count_missed_event_samples(&mut self) {
        let Some(s) = &self.sampler else { return };
        let periods = self.profile.event_periods();
        let counts = s.stack_event_counts(periods.len());
        self.missed_event_samples = counts
            .iter()
            .zip(periods)
            .enumerate()
            .map(|(i, ((count, fds), &period))| {
                let got = self.profile.n_event_samples.get(i).copied().unwrap_or(0);
                let expected = (count / period.max(1)).saturating_sub(*fds);
                let reported: u64 = self
                    .profile
                    .lost_events
                    .iter()
                    .filter(|((e, _), _)| *e == i)
                    .map(|(_, n)| n)
                    .sum();
                expected.saturating_sub(got).saturating_sub(reported)
            })
            .collect();
    }

    pub(super) fn disable(&mut self) {
        if let Some(s) = &self.sampler {
            s.disable();
        }
        if let Some(f) = &self.ftrace {
            f.stop();
        }
    }

    pub(super) fn drain(
        &mut self,
        sorter: &mut Sorter,
        chain: &mut Vec<u64>,
        timeout_ms: i32,
        last: bool,
    ) -> anyhow::Result<()> {
        match &mut self.sampler {
            Some(s) => {
                let began = s
                    .drain(timeout_ms, |cpu, rec| sorter.push(cpu, rec))
                    .context("reading perf ring buffers")?;
                // The last drain takes everything; others leave the last millisecond before
                // the read for the next (a record is stamped a little before it is readable).
                let watermark = if last {
                    u64::MAX
                } else {
                    began.saturating_sub(1_000_000)
                };
                let profile = &mut self.profile;
                let (layout, event_layout) = (s.layout, s.event_layout);
                sorter.flush_before(watermark, |cpu, rec| {
                    let layout = if cpu & records::EVENT_RING != 0 {
                        event_layout
                    } else {
                        layout
                    };
                    let r = records::decode(rec, chain, layout);
                    profile.handle(cpu, r, chain);
                });
            }
            None => std::thread::sleep(Duration::from_millis(timeout_ms as u64)),
        }
        Ok(())
    }

    pub(super) fn read_counters(&mut self, ts_ns: i64) {
        self.budget_interval(ts_ns);
        self.n_pmc += self.counters.read(ts_ns, &mut self.pending.pmc) as u64;
        if let Some(m) = &mut self.msrs {
            self.n_msr += m.read(ts_ns, &mut self.pending.msr) as u64;
        }
        self.n_sys += self.sysstat.sample(ts_ns, &mut self.pending.sys) as u64;
        if let Some(p) = &mut self.pidstat {
            let interval = self.cfg.interval.as_nanos() as i64;
            self.n_process += p.sample(ts_ns, interval, &mut self.pending.process) as u64;
        }
    }

    /// Ends an interval of the budget: function counts become rows, and when the recorder used
    /// more CPU than `--max-cpu-pct` allows since the last interval, it gives one thing up and
    /// says so (see [`crate::budget`]).
    pub(super) fn budget_interval(&mut self, ts_ns: i64) {
        if let Some(f) = &mut self.ftrace {
            f.count_functions(ts_ns);
        }
        let (user, system, _) = sys::self_usage();
        let running = Running {
            functions: self.ftrace.as_ref().is_some_and(|f| f.tracer_on),
            freq_hz: self.sampler.as_ref().map(|_| self.freq_hz),
            ftrace: self.ftrace.is_some() && !self.ftrace_stopped,
        };
        let was_exhausted = self.budget.exhausted;
        let interval_ns = self.cfg.interval.as_nanos() as i64;
        let Some((step, pct, limit)) =
            self.budget
                .interval(ts_ns, user + system, interval_ns, running)
        else {
            if self.budget.exhausted && !was_exhausted {
                eprintln!(
                    "warning: the recorder is over --max-cpu-pct with nothing left to give up"
                );
            }
            return;
        };
        let at = (ts_ns - self.loop_start_ns) as f64 / 1e9;
        let over = format!(
            "the recorder used {pct:.1}% of one CPU at +{at:.1} s, over --max-cpu-pct {limit}"
        );
        let failed = |r: Result<(), String>, what: &str| {
            r.err()
                .map_or_else(String::new, |e| format!(" ({what} failed: {e})"))
        };
        let (said, sources): (String, &[&str]) = match step {
            Step::StopFunctions => {
                let f = self
                    .ftrace
                    .as_mut()
                    .expect("function tracing runs in ftrace");
                let failed = failed(f.stop_functions(), "turning it off");
                (
                    format!("function tracing stopped: {over}{failed}"),
                    &["funccount", "funcgraph"],
                )
            }
            Step::LowerFrequency(hz) => {
                let s = self
                    .sampler
                    .as_ref()
                    .expect("a frequency is lowered on a sampler");
                let set = s.set_frequency(hz);
                if let Ok(Some(period_ns)) = set {
                    let now = sys::clock_ns(libc::CLOCK_MONOTONIC) as u64;
                    self.profile
                        .clock_period_changed(now, period_ns, &s.event_ids());
                }
                let failed = failed(set.map(drop).map_err(|e| e.to_string()), "the ioctl");
                let said = format!(
                    "sampling lowered from {} to {hz} Hz: {over}{failed}",
                    self.freq_hz
                );
                self.freq_hz = hz;
                (said, &[sources::PERF_SAMPLES])
            }
            Step::StopFtrace => {
                self.ftrace.as_ref().expect("ftrace runs").stop();
                self.ftrace_stopped = true;
                (format!("ftrace stopped: {over}"), &[sources::FTRACE])
            }
        };
        eprintln!("warning: {said}");
        self.unsaid
            .extend(sources.iter().map(|&name| (name, said.clone())));
        self.say_in_manifest();
    }

    /// The status line on a terminal: elapsed / duration, samples, ftrace events, losses,
    /// bytes written and the recorder's own CPU use (what `perf record` and trace-cmd users
    /// watch for).
    pub(super) fn progress(&self, elapsed: Duration) {
        eprint!("\r\x1b[K{}", self.status_line(elapsed));
    }

    pub(super) fn status_line(&self, elapsed: Duration) -> String {
        // While a segment is being closed, the bytes written are not known: show the last figure.
        let bytes: u64 = self
            .writer
            .as_ref()
            .map(|w| {
                w.manifest()
                    .tables
                    .values()
                    .flat_map(|t| &t.segments)
                    .map(|s| s.bytes)
                    .sum()
            })
            .unwrap_or(0);
        let lost: u64 = self.profile.lost.values().sum::<u64>()
            + self
                .ftrace
                .as_ref()
                .map_or(0, |f| f.losses().iter().map(|l| l.count).sum());
        let events = self.ftrace.as_ref().map_or(0, |f| f.n_events);
        let secs = elapsed.as_secs_f64();
        // Recording a command without -d runs until it exits: no duration to show.
        let of = if self.cfg.duration < Duration::from_secs(365 * 86400) {
            format!(" / {:.0} s", self.cfg.duration.as_secs_f64())
        } else {
            String::new()
        };
        let cpu_s = sys::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 / 1e9;
        format!(
            "{secs:>6.1}{of} s  samples {}  events {events}  lost {lost}  written {:.1} MiB  recorder CPU {:.1}%",
            self.profile.n_samples,
            bytes as f64 / 1048576.0,
            if secs > 0.0 {
                100.0 * cpu_s / secs
            } else {
                0.0
            },
        )
    }
}
