-- Correlations: per-second series of every resource metric and of each latency, and the metrics
-- ranked by their rank (Spearman) correlation with a latency, as `perfpack correlate` ranks
-- them. Correlation, not causation: a metric that rises with the latency may be its effect.
-- Needs: the per-interval views of sys/counters.sql; block_io, runqueue_latency,
-- syscall_duration for the latencies.

-- Every per-interval resource metric as one long series: CPU, disks, pressure, memory, network.
--
-- Columns:
--   bundle  bundle
--   host    host
--   ts_ns   end of the interval, CLOCK_MONOTONIC ns
--   dur_ns  length of the interval, ns
--   metric  what is measured, e.g. `disk nvme0n1 util_pct`, `cpu busy_pct`
--   value   its value over the interval
CREATE VIEW metric_series AS
SELECT bundle, host, ts_ns, dur_ns, 'cpu ' || m AS metric, v AS value FROM (
  SELECT bundle, host, ts_ns, dur_ns, 'busy_pct' AS m, CAST(busy_pct AS DOUBLE) AS v
  FROM cpu_utilization WHERE cpu = 'all'
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'iowait_pct', CAST(iowait_pct AS DOUBLE)
  FROM cpu_utilization WHERE cpu = 'all'
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'sys_pct', CAST(sys_pct AS DOUBLE)
  FROM cpu_utilization WHERE cpu = 'all'
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'steal_pct', CAST(steal_pct AS DOUBLE)
  FROM cpu_utilization WHERE cpu = 'all'
)
UNION ALL
SELECT bundle, host, ts_ns, dur_ns, 'disk ' || disk || ' ' || m, v FROM (
  SELECT bundle, host, ts_ns, dur_ns, disk, 'util_pct' AS m, CAST(util_pct AS DOUBLE) AS v
  FROM disk_utilization
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, disk, 'aqu_sz', CAST(aqu_sz AS DOUBLE)
  FROM disk_utilization
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, disk, 'iops', CAST(iops AS DOUBLE)
  FROM disk_utilization
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, disk, 'r_await_ms', CAST(r_await_ms AS DOUBLE)
  FROM disk_utilization
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, disk, 'w_await_ms', CAST(w_await_ms AS DOUBLE)
  FROM disk_utilization
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, disk, 'kB/s',
    CAST(rkb_per_s + wkb_per_s AS DOUBLE)
  FROM disk_utilization
)
UNION ALL
SELECT bundle, host, ts_ns, dur_ns, 'pressure ' || m, v FROM (
  SELECT bundle, host, ts_ns, dur_ns, 'cpu_some_pct' AS m, CAST(cpu_some_pct AS DOUBLE) AS v
  FROM pressure
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'io_some_pct', CAST(io_some_pct AS DOUBLE)
  FROM pressure
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'io_full_pct', CAST(io_full_pct AS DOUBLE)
  FROM pressure
  UNION ALL SELECT bundle, host, ts_ns, dur_ns, 'memory_some_pct',
    CAST(memory_some_pct AS DOUBLE)
  FROM pressure
)
UNION ALL
SELECT bundle, host, ts_ns, CAST(1000000000 AS BIGINT), 'memory ' || m, v FROM (
  SELECT bundle, host, ts_ns, 'used_pct' AS m, CAST(used_pct AS DOUBLE) AS v FROM memory
  UNION ALL SELECT bundle, host, ts_ns, 'pgmajfault_per_s', CAST(pgmajfault_per_s AS DOUBLE)
  FROM memory
  UNION ALL SELECT bundle, host, ts_ns, 'pgscan_kswapd_per_s',
    CAST(pgscan_kswapd_per_s AS DOUBLE)
  FROM memory
)
UNION ALL
SELECT bundle, host, ts_ns, dur_ns, 'net ' || interface || ' kB/s',
  CAST(rx_kb_per_s + tx_kb_per_s AS DOUBLE)
FROM network
ORDER BY bundle, metric, ts_ns;

-- Each latency per second of CLOCK_MONOTONIC (block I/O by issue time, run-queue waits by
-- wakeup, system calls by entry): how many, mean, median and maximum.
--
-- Columns:
--   bundle   bundle
--   host     host
--   source   block, runq or syscall
--   second   CLOCK_MONOTONIC second (ts_ns / 1e9, rounded down)
--   n        events in the second
--   mean_ns  mean latency, ns
--   p50_ns   median latency, ns
--   max_ns   largest latency, ns
CREATE VIEW latency_series AS
WITH l AS (
  SELECT bundle, host, 'block' AS source, ts_ns, CAST(latency_ns AS DOUBLE) AS latency_ns
  FROM block_io WHERE latency_ns IS NOT NULL
  UNION ALL
  SELECT bundle, host, 'runq', ts_ns, CAST(latency_ns AS DOUBLE)
  FROM runqueue_latency WHERE latency_ns IS NOT NULL
  UNION ALL
  SELECT bundle, host, 'syscall', ts_ns, CAST(dur_ns AS DOUBLE) FROM syscall_duration
)
SELECT bundle, host, source, ts_ns / 1000000000 AS second, COUNT(*) AS n,
  AVG(latency_ns) AS mean_ns, median(latency_ns) AS p50_ns, MAX(latency_ns) AS max_ns
FROM l
GROUP BY bundle, host, source, ts_ns / 1000000000
ORDER BY bundle, source, second;

-- Every metric ranked by Spearman's rho with each latency's per-second mean, per bundle: the
-- Pearson correlation of the two series' ranks (ties given their average rank) over the
-- seconds both have, at least 5. An interval's metric counts for the second its middle falls
-- in. Correlation, not causation.
--
-- Columns:
--   bundle   bundle
--   host     host
--   source   the latency: block, runq or syscall
--   metric   the metric of metric_series
--   rho      Spearman's rank correlation, -1 to 1
--   seconds  seconds both series have
CREATE VIEW latency_correlation AS
WITH m AS (
  SELECT bundle, metric, (ts_ns - dur_ns / 2) / 1000000000 AS second, AVG(value) AS x
  FROM metric_series WHERE value IS NOT NULL AND dur_ns IS NOT NULL
  GROUP BY bundle, metric, (ts_ns - dur_ns / 2) / 1000000000
),
j AS (
  SELECT m.bundle, l.host, l.source, m.metric, m.x, l.mean_ns AS y
  FROM m JOIN latency_series l ON l.bundle = m.bundle AND l.second = m.second
),
r AS (
  SELECT bundle, host, source, metric,
    (RANK() OVER (PARTITION BY bundle, source, metric ORDER BY x)
      + COUNT(*) OVER (PARTITION BY bundle, source, metric) + 1
      - RANK() OVER (PARTITION BY bundle, source, metric ORDER BY x DESC)) / 2.0 AS rx,
    (RANK() OVER (PARTITION BY bundle, source, metric ORDER BY y)
      + COUNT(*) OVER (PARTITION BY bundle, source, metric) + 1
      - RANK() OVER (PARTITION BY bundle, source, metric ORDER BY y DESC)) / 2.0 AS ry
  FROM j
)
SELECT bundle, host, source, metric, corr(rx, ry) AS rho, COUNT(*) AS seconds
FROM r
GROUP BY bundle, host, source, metric
HAVING COUNT(*) >= 5 AND corr(rx, ry) IS NOT NULL
ORDER BY bundle, source, abs(rho) DESC, metric;
