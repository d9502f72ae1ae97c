-- Scheduler latency: how long runnable threads waited for a CPU (runqlat), and what each thread
-- was doing over time (running, runnable, sleeping, blocked on I/O).
-- Needs: sched_switch and sched_wakeup (the `sched` or `default` preset).
-- Idle threads (tid 0) are left out.

-- Each run-queue wait: from a wakeup (or a preemption that left the thread runnable) to the
-- thread's next switch-in (runqlat's events).
--
-- Columns:
--   bundle           bundle
--   host             host
--   ts_ns            when the thread became runnable, CLOCK_MONOTONIC ns
--   switch_in_ts_ns  when it got a CPU, CLOCK_MONOTONIC ns
--   latency_ns       run-queue wait, ns
--   tid              the thread
--   comm             its name at the switch-in
--   cpu              CPU it ran on
--   waker_tid        thread that woke it (null after a preemption)
--   reason           `wakeup`, `wakeup_new` or `preempted`
CREATE VIEW runqueue_latency AS
WITH ev AS (
  SELECT bundle, host, ts_ns, tid, CASE WHEN new THEN 'wakeup_new' ELSE 'wakeup' END AS kind,
         target_cpu AS cpu, comm, waker_tid, 0 AS kind_order
  FROM sched_wakeup WHERE tid <> 0
  UNION ALL
  SELECT bundle, host, ts_ns, prev_tid AS tid, 'preempted' AS kind, cpu, prev_comm AS comm,
         CAST(NULL AS INT) AS waker_tid, 0 AS kind_order
  FROM sched_switch WHERE prev_tid <> 0 AND prev_state LIKE 'R%'
  UNION ALL
  SELECT bundle, host, ts_ns, next_tid AS tid, 'switch_in' AS kind, cpu, next_comm AS comm,
         CAST(NULL AS INT) AS waker_tid, 1 AS kind_order
  FROM sched_switch WHERE next_tid <> 0
),
seq AS (
  SELECT *,
         LEAD(kind) OVER w AS next_kind,
         LEAD(ts_ns) OVER w AS next_ts_ns,
         LEAD(cpu) OVER w AS next_cpu,
         LEAD(comm) OVER w AS next_comm
  FROM ev
  WINDOW w AS (PARTITION BY bundle, tid ORDER BY ts_ns, kind_order)
)
SELECT bundle, host, ts_ns, next_ts_ns AS switch_in_ts_ns, next_ts_ns - ts_ns AS latency_ns,
       tid, next_comm AS comm, next_cpu AS cpu, waker_tid, kind AS reason
FROM seq
WHERE kind <> 'switch_in' AND next_kind = 'switch_in'
ORDER BY bundle, ts_ns, tid;

-- Thread state intervals from context switches and wakeups: a thread runs from its switch-in
-- to its switch-out; after that it is runnable (state R), sleeping (S, or I for idle kernel
-- threads), blocked (D: uninterruptible, usually disk I/O) or `other` (stopped, dead) until its
-- next wakeup or switch-in. The last state of each thread, whose end was not recorded, has no row.
--
-- Columns:
--   bundle     bundle
--   host       host
--   tid        the thread
--   comm       its name when the interval started
--   state      `running`, `runnable`, `sleeping`, `blocked_io` or `other`
--   ts_ns      start of the interval, CLOCK_MONOTONIC ns
--   dur_ns     length of the interval, ns
--   cpu        CPU it ran on (running) or last ran on
CREATE VIEW thread_state AS
WITH ev AS (
  SELECT bundle, host, ts_ns, next_tid AS tid, next_comm AS comm, 'running' AS state, cpu,
         2 AS ev_order
  FROM sched_switch WHERE next_tid <> 0
  UNION ALL
  SELECT bundle, host, ts_ns, prev_tid AS tid, prev_comm AS comm,
         CASE WHEN prev_state LIKE 'R%' THEN 'runnable'
              WHEN prev_state IN ('S', 'I') THEN 'sleeping'
              WHEN prev_state LIKE 'D%' THEN 'blocked_io'
              ELSE 'other' END AS state,
         cpu, 0 AS ev_order
  FROM sched_switch WHERE prev_tid <> 0
  UNION ALL
  SELECT bundle, host, ts_ns, tid, comm, 'runnable' AS state, target_cpu AS cpu, 1 AS ev_order
  FROM sched_wakeup WHERE tid <> 0
),
seq AS (
  SELECT *, LEAD(ts_ns) OVER (PARTITION BY bundle, tid ORDER BY ts_ns, ev_order) AS end_ns
  FROM ev
)
SELECT bundle, host, tid, comm, state, ts_ns, end_ns - ts_ns AS dur_ns, cpu
FROM seq
WHERE end_ns IS NOT NULL
ORDER BY bundle, tid, ts_ns;
