//! `--max-cpu-pct`: the recorder's CPU budget. At the end of every counter interval the
//! recorder's own CPU use (all threads, from getrusage) is compared with the budget; over it,
//! one thing is given up, and the recorder waits two intervals to see the effect before the
//! next. Function tracing goes first (the costliest source by far when on); then whichever of
//! the sampler and ftrace cost the main thread more in the interval: the sampler halves its
//! frequency (down to 1 Hz; samples carry their periods, so weights stay right), ftrace stops.
//! Without `--max-cpu-pct`, only function tracing is guarded, at 10%.

/// The function tracing guard when no budget is given.
pub const FUNCTION_TRACING_PCT: f64 = 10.0;

/// The sampler's frequency is not lowered below this.
pub const MIN_FREQ_HZ: u64 = 1;

/// What can still be given up.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub functions: bool,
    /// The sampler's frequency, when there is a sampler.
    pub freq_hz: Option<u64>,
    pub ftrace: bool,
}

/// One thing given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    StopFunctions,
    LowerFrequency(u64),
    StopFtrace,
}

#[derive(Debug, Default)]
pub struct Budget {
    /// `--max-cpu-pct`.
    pub limit: Option<f64>,
    /// Main-thread CPU seconds spent reading and decoding each source since the last interval.
    pub sampler_s: f64,
    pub ftrace_s: f64,
    /// (time, process CPU seconds) at the last interval.
    last: Option<(i64, f64)>,
    /// No step before this time (the last one is still taking effect).
    settle_until: i64,
    /// Said once when over budget with nothing left to give up.
    pub exhausted: bool,
}

impl Budget {
    pub fn new(limit: Option<f64>) -> Budget {
        Budget {
            limit,
            ..Budget::default()
        }
    }

    /// Ends an interval at `ts_ns` with the process at `cpu_s` CPU seconds. Returns the step to
    /// take, with the CPU use (% of one CPU) and the budget that called for it.
    pub fn interval(
        &mut self,
        ts_ns: i64,
        cpu_s: f64,
        interval_ns: i64,
        running: Running,
    ) -> Option<(Step, f64, f64)> {
        let (sampler_s, ftrace_s) = (self.sampler_s, self.ftrace_s);
        self.sampler_s = 0.0;
        self.ftrace_s = 0.0;
        let (t0, cpu0) = self.last.replace((ts_ns, cpu_s))?;
        if ts_ns <= t0 || ts_ns < self.settle_until {
            return None;
        }
        let limit = match self.limit {
            Some(l) => l,
            None if running.functions => FUNCTION_TRACING_PCT,
            None => return None,
        };
        let pct = 100.0 * (cpu_s - cpu0) / ((ts_ns - t0) as f64 / 1e9);
        if pct <= limit {
            return None;
        }
        let step = choose(self.limit.is_some(), running, sampler_s, ftrace_s);
        match step {
            Some(_) => self.settle_until = ts_ns + 2 * interval_ns,
            None => self.exhausted = true,
        }
        Some((step?, pct, limit))
    }
}

/// What to give up next; `None` when nothing is left (or only function tracing is guarded).
fn choose(whole_budget: bool, running: Running, sampler_s: f64, ftrace_s: f64) -> Option<Step> {
    if running.functions {
        return Some(Step::StopFunctions);
    }
    if !whole_budget {
        return None;
    }
    let lower = running
        .freq_hz
        .filter(|&f| f > MIN_FREQ_HZ)
        .map(|f| Step::LowerFrequency((f / 2).max(MIN_FREQ_HZ)));
    let stop = running.ftrace.then_some(Step::StopFtrace);
    if ftrace_s > sampler_s {
        stop.or(lower)
    } else {
        lower.or(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn all_on() -> Running {
        Running {
            functions: true,
            freq_hz: Some(99),
            ftrace: true,
        }
    }

    #[test]
    fn gives_up_function_tracing_first_then_the_costlier_source() {
        let on = all_on();
        assert_eq!(choose(true, on, 0.1, 0.0), Some(Step::StopFunctions));
        let no_fn = Running {
            functions: false,
            ..on
        };
        assert_eq!(
            choose(true, no_fn, 0.2, 0.1),
            Some(Step::LowerFrequency(49))
        );
        assert_eq!(choose(true, no_fn, 0.1, 0.2), Some(Step::StopFtrace));
        // At the floor the sampler has nothing left to give; ftrace goes even though cheaper.
        let floor = Running {
            freq_hz: Some(1),
            ..no_fn
        };
        assert_eq!(choose(true, floor, 0.2, 0.1), Some(Step::StopFtrace));
        let nothing = Running {
            ftrace: false,
            ..floor
        };
        assert_eq!(choose(true, nothing, 0.2, 0.1), None);
        // Without --max-cpu-pct only function tracing is guarded.
        assert_eq!(choose(false, no_fn, 0.2, 0.1), None);
    }

    #[test]
    fn acts_over_the_budget_only_and_waits_for_the_effect() {
        let on = Running {
            functions: false,
            ..all_on()
        };
        let mut b = Budget::new(Some(5.0));
        assert_eq!(
            b.interval(0, 0.0, S, on),
            None,
            "the first interval only starts"
        );
        // 3% of one CPU: under.
        assert_eq!(b.interval(S, 0.03, S, on), None);
        // 20%: over; the sampler cost more.
        b.sampler_s = 0.15;
        b.ftrace_s = 0.01;
        let (step, pct, limit) = b.interval(2 * S, 0.23, S, on).unwrap();
        assert_eq!(step, Step::LowerFrequency(49));
        assert!((pct - 20.0).abs() < 1e-9 && limit == 5.0);
        // Still over during the next two intervals: no step while the last takes effect.
        assert_eq!(b.interval(3 * S, 0.43, S, on), None);
        b.ftrace_s = 0.2;
        let (step, _, _) = b.interval(4 * S, 0.63, S, on).unwrap();
        assert_eq!(step, Step::StopFtrace);
        // Without a budget, sources are left alone however much they cost.
        let mut free = Budget::new(None);
        free.interval(0, 0.0, S, on);
        assert_eq!(free.interval(S, 0.9, S, on), None);
    }
}
