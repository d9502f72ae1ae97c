-- Per-process CPU, memory, context switches and disk I/O per interval, the columns of
-- `pidstat -u -r -w -d`, from the cumulative counters of `process_stat`. The recorder writes a
-- process only in intervals where it used at least its threshold of CPU (1% of one CPU by
-- default), so a row's rates cover the time since that process's previous row.
-- Needs: process_stat.

-- pidstat: one row per process per interval it was busy in (the first row of a process has no
-- previous reading and is left out).
--
-- Columns:
--   bundle          bundle
--   host            host
--   ts_ns           end of the interval, CLOCK_MONOTONIC ns
--   dur_ns          time since the process's previous row, ns
--   pid             process
--   comm            process name
--   usr_pct         user CPU, % of one CPU
--   sys_pct         system CPU, % of one CPU
--   cpu_pct         usr_pct + sys_pct
--   rss_bytes       resident set size at ts_ns, bytes
--   threads         threads at ts_ns
--   cswch_per_s     voluntary context switches of the main thread per second
--   nvcswch_per_s   involuntary context switches of the main thread per second
--   read_bytes_per_s    bytes read from storage per second, where readable
--   write_bytes_per_s   bytes written to storage per second, where readable
CREATE VIEW pidstat AS
WITH d AS (
  SELECT bundle, host, ts_ns, pid, comm, rss_bytes, threads,
         ts_ns - LAG(ts_ns) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS dur_ns,
         utime_ns - LAG(utime_ns) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS du,
         stime_ns - LAG(stime_ns) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS ds,
         voluntary_switches - LAG(voluntary_switches) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS dv,
         involuntary_switches - LAG(involuntary_switches) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS dn,
         read_bytes - LAG(read_bytes) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS dr,
         write_bytes - LAG(write_bytes) OVER (PARTITION BY bundle, pid ORDER BY ts_ns) AS dw
  FROM process_stat
)
SELECT bundle, host, ts_ns, dur_ns, pid, comm,
       100.0 * du / dur_ns AS usr_pct,
       100.0 * ds / dur_ns AS sys_pct,
       100.0 * (du + ds) / dur_ns AS cpu_pct,
       rss_bytes, threads,
       1e9 * dv / dur_ns AS cswch_per_s,
       1e9 * dn / dur_ns AS nvcswch_per_s,
       1e9 * dr / dur_ns AS read_bytes_per_s,
       1e9 * dw / dur_ns AS write_bytes_per_s
FROM d
WHERE dur_ns > 0
ORDER BY bundle, ts_ns, cpu_pct DESC, pid;
