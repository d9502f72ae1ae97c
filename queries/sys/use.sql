-- The USE method checklist (utilization, saturation, errors for every resource), from the
-- per-interval views of this package and the block events. Each row is one metric of one
-- resource over the whole capture: the mean and the worst interval, the threshold used, and
-- `warn` when the worst interval crosses it. Thresholds are the usual rules of thumb: a
-- resource over 70–80% busy queues work; any swapping, drop, error or OOM kill is worth a look.
-- Needs: sys_counter (and block_rq for disk errors).

-- USE checklist: utilization, saturation and errors of CPUs, memory, disks and interfaces.
--
-- Columns:
--   bundle     bundle
--   host       host
--   resource   `cpu all`, each CPU (`cpu0`...), `memory`, `disk <name>`, `net <interface>`, `tcp`
--   type       `utilization`, `saturation` or `errors`
--   metric     what was measured (the column of the per-interval view)
--   mean       mean over the intervals
--   worst      highest interval value
--   unit       unit of mean and worst
--   threshold  value from which the metric is flagged
--   status     `warn` when worst ≥ threshold (> 0 for errors), else `ok`
CREATE VIEW use_checklist AS
WITH m AS (
  SELECT bundle, host, CASE WHEN cpu = 'all' THEN 'cpu all' ELSE cpu END AS resource, 'utilization' AS type, 'busy_pct' AS metric,
         AVG(busy_pct) AS mean, MAX(busy_pct) AS worst, '%' AS unit, 80.0 AS threshold
  FROM cpu_utilization GROUP BY bundle, host, cpu
  UNION ALL
  SELECT bundle, host, 'cpu all', 'saturation', 'cpu_some_pct (PSI)',
         AVG(cpu_some_pct), MAX(cpu_some_pct), '%', 10.0
  FROM pressure GROUP BY bundle, host
  UNION ALL
  SELECT bundle, host, instance, 'saturation', 'run-queue wait (schedstat wait_ns per ns)',
         AVG(delta / dur_ns), MAX(delta / dur_ns), 'tasks waiting', 1.0
  FROM sys_counter_delta
  WHERE source = 'schedstat' AND name = 'wait_ns' AND delta IS NOT NULL
  GROUP BY bundle, host, instance
  UNION ALL
  SELECT bundle, host, 'memory', 'utilization', 'used_pct', AVG(used_pct), MAX(used_pct), '%', 90.0
  FROM memory GROUP BY bundle, host
  UNION ALL
  SELECT bundle, host, 'memory', 'saturation', 'pgscan_kswapd + pswpin + pswpout per s',
         AVG(COALESCE(pgscan_kswapd_per_s, 0) + COALESCE(pswpin_per_s, 0) + COALESCE(pswpout_per_s, 0)),
         MAX(COALESCE(pgscan_kswapd_per_s, 0) + COALESCE(pswpin_per_s, 0) + COALESCE(pswpout_per_s, 0)),
         'pages/s', 1.0
  FROM memory GROUP BY bundle, host
  UNION ALL
  SELECT bundle, host, 'memory', 'errors', 'oom_kill', AVG(oom_kill), MAX(oom_kill), 'kills', 0.0
  FROM memory GROUP BY bundle, host
  UNION ALL
  SELECT bundle, host, 'disk ' || disk, 'utilization', 'util_pct', AVG(util_pct), MAX(util_pct), '%', 70.0
  FROM disk_utilization GROUP BY bundle, host, disk
  UNION ALL
  SELECT bundle, host, 'disk ' || disk, 'saturation', 'aqu_sz', AVG(aqu_sz), MAX(aqu_sz), 'requests', 2.0
  FROM disk_utilization GROUP BY bundle, host, disk
  UNION ALL
  SELECT bundle, host, 'disk ' || COALESCE(disk, dev), 'errors', 'failed requests',
         CAST(SUM(CASE WHEN error <> 0 THEN 1 ELSE 0 END) AS DOUBLE),
         CAST(SUM(CASE WHEN error <> 0 THEN 1 ELSE 0 END) AS DOUBLE), 'requests', 0.0
  FROM block_rq WHERE phase = 'complete' GROUP BY bundle, host, COALESCE(disk, dev)
  UNION ALL
  SELECT bundle, host, 'net ' || interface, 'utilization', 'rx + tx KiB/s',
         AVG(rx_kb_per_s + tx_kb_per_s), MAX(rx_kb_per_s + tx_kb_per_s), 'KiB/s',
         CAST(NULL AS DOUBLE)
  FROM network GROUP BY bundle, host, interface
  UNION ALL
  SELECT bundle, host, 'net ' || interface, 'saturation', 'drops per s',
         AVG(rx_drop_per_s + tx_drop_per_s), MAX(rx_drop_per_s + tx_drop_per_s), 'packets/s', 0.0
  FROM network GROUP BY bundle, host, interface
  UNION ALL
  SELECT bundle, host, 'net ' || interface, 'errors', 'errors per s',
         AVG(rx_errs_per_s + tx_errs_per_s), MAX(rx_errs_per_s + tx_errs_per_s), 'packets/s', 0.0
  FROM network GROUP BY bundle, host, interface
  UNION ALL
  SELECT bundle, host, 'tcp', 'errors', 'retrans_pct', AVG(retrans_pct), MAX(retrans_pct), '%', 1.0
  FROM network_tcp GROUP BY bundle, host
)
SELECT bundle, host, resource, type, metric, mean, worst, unit, threshold,
       CASE WHEN threshold IS NULL OR worst IS NULL THEN 'ok'
            WHEN threshold = 0 AND worst > 0 THEN 'warn'
            WHEN threshold > 0 AND worst >= threshold THEN 'warn'
            ELSE 'ok' END AS status
FROM m
ORDER BY bundle, resource, type, metric;
