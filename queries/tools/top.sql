-- The processes and threads that were on CPU most, from the CPU profile (like `perf top` or
-- `perf report --sort pid`): the samples of each bundle's CPU event only (`cpu_sample`), each
-- one sampling period of CPU time. Switch-out samples and other events are not CPU time and
-- are not counted; a process that only blocked is not listed.
-- Needs: stack_sample.

-- Processes by CPU samples.
--
-- Columns:
--   bundle      bundle
--   host        host
--   pid         process (0 is the idle loop)
--   comm        name of its thread with the most samples
--   event       the CPU event counted (`cpu_event`)
--   samples     CPU samples of the process
--   pct         share of the bundle's CPU samples, %
--   weight      summed sample weight (ns of CPU time for cpu-clock and task-clock)
CREATE VIEW top_processes AS
WITH p AS (
  SELECT bundle, host, pid, comm, event, COUNT(*) AS n, SUM(weight) AS w
  FROM cpu_sample GROUP BY bundle, host, pid, comm, event
),
r AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bundle, pid ORDER BY n DESC, comm) AS rank
  FROM p
)
SELECT bundle, host, pid,
       MAX(CASE WHEN rank = 1 THEN comm END) AS comm,
       MAX(event) AS event,
       SUM(n) AS samples,
       100.0 * SUM(n) / SUM(SUM(n)) OVER (PARTITION BY bundle) AS pct,
       SUM(w) AS weight
FROM r
GROUP BY bundle, host, pid
ORDER BY bundle, samples DESC, pid;

-- Threads by CPU samples (`top -H`).
--
-- Columns:
--   bundle      bundle
--   host        host
--   pid         process (0 is the idle loop)
--   tid         thread
--   comm        its name with the most samples
--   event       the CPU event counted (`cpu_event`)
--   samples     CPU samples of the thread
--   pct         share of the bundle's CPU samples, %
--   weight      summed sample weight (ns of CPU time for cpu-clock and task-clock)
CREATE VIEW top_threads AS
WITH t AS (
  SELECT bundle, host, pid, tid, comm, event, COUNT(*) AS n, SUM(weight) AS w
  FROM cpu_sample GROUP BY bundle, host, pid, tid, comm, event
),
r AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bundle, tid ORDER BY n DESC, comm) AS rank
  FROM t
)
SELECT bundle, host, pid, tid,
       MAX(CASE WHEN rank = 1 THEN comm END) AS comm,
       MAX(event) AS event,
       SUM(n) AS samples,
       100.0 * SUM(n) / SUM(SUM(n)) OVER (PARTITION BY bundle) AS pct,
       SUM(w) AS weight
FROM r
GROUP BY bundle, host, pid, tid
ORDER BY bundle, samples DESC, pid, tid;
