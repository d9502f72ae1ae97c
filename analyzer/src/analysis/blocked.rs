//! Blocked time, the one definition the off-CPU flame graph and the Firefox Profiler export
//! share: each time a thread was switched out not runnable (`prev_state` not R), until its next
//! switch-in (bcc's offcputime). The runnable wait after its wakeup is part of it, as there.

/// Rows (bundle, ts_ns, end_ts_ns, dur_ns, cpu, tid, pid, comm, state): one per blocked
/// interval. `state` is the switch-out's `prev_state` letters.
pub const BLOCKED_SQL: &str = "WITH ev AS (
           SELECT bundle, ts_ns, cpu, prev_tid AS tid, prev_comm AS comm, prev_state AS state, 0 AS k
           FROM sched_switch WHERE prev_tid <> 0
           UNION ALL
           SELECT bundle, ts_ns, cpu, next_tid AS tid, next_comm AS comm, CAST(NULL AS VARCHAR) AS state, 1 AS k
           FROM sched_switch WHERE next_tid <> 0
         ),
         seq AS (
           SELECT *, LEAD(k) OVER w AS next_k, LEAD(ts_ns) OVER w AS next_ts
           FROM ev WINDOW w AS (PARTITION BY bundle, tid ORDER BY ts_ns, k)
         ),
         pids AS (
           SELECT bundle, tid, MAX(pid) AS pid FROM (
             SELECT bundle, tid, pid FROM thread
             UNION ALL SELECT DISTINCT bundle, tid, pid FROM stack_sample
           ) GROUP BY bundle, tid
         ),
         blocked AS (
           SELECT s.bundle, s.ts_ns, s.next_ts AS end_ts_ns, s.next_ts - s.ts_ns AS dur_ns, s.cpu,
                  s.tid, p.pid, s.comm, s.state
           FROM seq s LEFT JOIN pids p ON s.bundle = p.bundle AND s.tid = p.tid
           WHERE s.k = 0 AND s.next_k = 1 AND s.state NOT LIKE 'R%'
         )
 SELECT * FROM blocked";

/// How far apart a `sched:sched_switch` sample and the switch it belongs to may be stamped.
const SWITCH_SLACK_NS: i64 = 100_000;

/// The switch-out sample of a blocked interval that starts at `start`, from one thread's
/// `sched:sched_switch` samples `(ts_ns, leaf callsite)` sorted by time: perf and ftrace stamp
/// the same switch moments apart, so the last sample within a little slack of it.
pub fn switch_sample(samples: &[(i64, i64)], start: i64) -> Option<i64> {
    let late = start.saturating_add(SWITCH_SLACK_NS);
    let n = samples.partition_point(|&(t, _)| t <= late);
    let &(t, leaf) = samples[..n].last()?;
    (t >= start.saturating_sub(SWITCH_SLACK_NS)).then_some(leaf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_switch_sample_belongs_to_the_switch_within_slack() {
        let at = [(1_000, 1), (500_000, 2), (900_000, 3)];
        assert_eq!(super::switch_sample(&at, 450_000), Some(2));
        assert_eq!(super::switch_sample(&at, 560_000), Some(2));
        assert_eq!(super::switch_sample(&at, 700_000), None);
        assert_eq!(super::switch_sample(&at, 0), Some(1));
        assert_eq!(super::switch_sample(&[], 0), None);
    }
}
