-- The processes and threads that were on CPU most, from the CPU profile (like `perf top` or
-- `perf report --sort pid`). Each sample stands for one sampling period of CPU time.
-- Needs: stack_sample.

-- Processes by CPU samples.
--
-- Columns:
--   bundle      bundle
--   host        host
--   pid         process (0 is the idle loop)
--   comm        name of its thread with the most samples
--   samples     stack samples of the process
--   pct         share of all samples of the bundle, %
--   weight      summed sample weight (ns of CPU time for cpu-clock)
CREATE VIEW top_processes AS
WITH p AS (
  SELECT bundle, host, pid, comm, COUNT(*) AS n, SUM(weight) AS w
  FROM stack_sample GROUP BY bundle, host, pid, comm
),
r AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bundle, pid ORDER BY n DESC, comm) AS rank
  FROM p
)
SELECT bundle, host, pid,
       MAX(CASE WHEN rank = 1 THEN comm END) AS comm,
       SUM(n) AS samples,
       100.0 * SUM(n) / SUM(SUM(n)) OVER (PARTITION BY bundle) AS pct,
       SUM(w) AS weight
FROM r
GROUP BY bundle, host, pid
ORDER BY bundle, samples DESC, pid;
