-- What a CPU profile counts: the stack samples of each bundle's CPU event, and no others.
-- `stack_sample` holds other events too: `sched:sched_switch` switch-outs (one row per blocked
-- switch, weighing 1), and in imported captures page faults or any tracepoint. Counting every
-- row counts blocked time and events as CPU time, and adds weights of different units.
-- Needs: stack_sample.

-- The CPU event of each bundle: the first of `cpu-clock`, `task-clock`, `cycles` and
-- `cpu-cycles` that it sampled (the analyzer's `analysis::cpu::CPU_EVENTS`, in that order).
-- A bundle that sampled none of them (an imported page-fault profile) has no row, and its CPU
-- tables are empty.
--
-- Columns:
--   bundle   bundle
--   host     host
--   event    the sampled event whose samples stand for CPU time
--   samples  its stack samples
CREATE VIEW cpu_event AS
SELECT bundle, host, event, samples FROM (
  SELECT bundle, host, event, COUNT(*) AS samples,
         ROW_NUMBER() OVER (PARTITION BY bundle ORDER BY
           CASE event WHEN 'cpu-clock' THEN 1 WHEN 'task-clock' THEN 2 WHEN 'cycles' THEN 3
                      ELSE 4 END) AS r
  FROM stack_sample
  WHERE event IN ('cpu-clock', 'task-clock', 'cycles', 'cpu-cycles')
  GROUP BY bundle, host, event
) WHERE r = 1
ORDER BY bundle;

-- The CPU samples: the stack samples of each bundle's CPU event (`cpu_event`). Each row is one
-- sampling period of CPU time of the thread that was on the CPU; `weight` is that period (ns
-- for cpu-clock and task-clock, cycles for cycles).
--
-- Columns:
--   bundle       bundle
--   host         host
--   ts_ns        sample time, CLOCK_MONOTONIC ns
--   cpu          CPU the sample was taken on
--   pid          process id (0 is the idle loop)
--   tid          thread id
--   comm         thread name at sample time
--   event        the bundle's CPU event
--   weight       the sampling period: ns of CPU time for clocks, events for cycles
--   callsite_id  leaf callsite of the stack (join `stack` for the whole stack)
--   unwind       how the user stack was obtained (`fp`, `dwarf`, `mixed`, `kernel`)
--   truncated    whether unwinding stopped before the outermost frame
CREATE VIEW cpu_sample AS
SELECT s.bundle, s.host, s.ts_ns, s.cpu, s.pid, s.tid, s.comm, s.event, s.weight,
       s.callsite_id, s.unwind, s.truncated
FROM stack_sample s JOIN cpu_event c ON s.bundle = c.bundle AND s.event = c.event
ORDER BY bundle, ts_ns, cpu;
