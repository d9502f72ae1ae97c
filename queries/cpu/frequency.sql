-- CPU frequency and utilization per CPU per interval, the columns of turbostat and
-- msr-cloud-tools' showboost, from deltas of the TSC, APERF and MPERF registers between two
-- readings of the same CPU: busy MHz = TSC MHz × ΔAPERF/ΔMPERF, busy % = ΔMPERF/ΔTSC.
-- Needs: msr (the recorder reads the registers of a CPU at one timestamp per interval);
-- pmc for IPC. Where only cpufreq was readable, bzy_mhz is the kernel's scaling_cur_freq and
-- the other columns are null: the `source` column says which.

-- Turbostat columns per CPU per interval.
--
-- Columns:
--   bundle      bundle
--   host        host
--   ts_ns       end of the interval, CLOCK_MONOTONIC ns
--   dur_ns      length of the interval, ns
--   cpu         the CPU
--   avg_mhz     average frequency over the whole interval, idle included (turbostat Avg_MHz)
--   busy_pct    share of the interval the CPU was not idle (C0), % (turbostat Busy%)
--   bzy_mhz     average frequency while busy, MHz (turbostat Bzy_MHz)
--   tsc_mhz     TSC rate over the interval, MHz (turbostat TSC_MHz)
--   ipc         instructions per cycle in the interval, where PMCs were counted
--   source      where the figures come from: `msr-dev`, `perf-msr-pmu` or `cpufreq`
CREATE VIEW cpu_frequency AS
WITH r AS (
  SELECT bundle, host, ts_ns, cpu, source,
         MAX(CASE WHEN name = 'TSC' THEN value END) AS tsc,
         MAX(CASE WHEN name = 'APERF' THEN value END) AS aperf,
         MAX(CASE WHEN name = 'MPERF' THEN value END) AS mperf,
         MAX(CASE WHEN name = 'scaling_cur_freq_khz' THEN value END) AS cur_khz
  FROM msr
  WHERE name IN ('TSC', 'APERF', 'MPERF', 'scaling_cur_freq_khz')
  GROUP BY bundle, host, ts_ns, cpu, source
),
d AS (
  SELECT bundle, host, ts_ns, cpu, source, cur_khz,
         ts_ns - LAG(ts_ns) OVER w AS dur_ns,
         LAG(ts_ns) OVER w AS prev_ts_ns,
         CAST(tsc AS DOUBLE) - CAST(LAG(tsc) OVER w AS DOUBLE) AS d_tsc,
         CAST(aperf AS DOUBLE) - CAST(LAG(aperf) OVER w AS DOUBLE) AS d_aperf,
         CAST(mperf AS DOUBLE) - CAST(LAG(mperf) OVER w AS DOUBLE) AS d_mperf
  FROM r
  WINDOW w AS (PARTITION BY bundle, cpu, source ORDER BY ts_ns)
),
ipc AS (
  SELECT d.bundle, d.cpu, d.ts_ns,
         CAST(SUM(CASE WHEN p.event = 'instructions' THEN p.value END) AS DOUBLE)
           / NULLIF(CAST(SUM(CASE WHEN p.event = 'cycles' THEN p.value END) AS DOUBLE), 0) AS ipc
  FROM d JOIN pmc p
    ON p.bundle = d.bundle AND p.cpu = d.cpu AND p.ts_ns > d.prev_ts_ns AND p.ts_ns <= d.ts_ns
  WHERE p.event IN ('instructions', 'cycles')
  GROUP BY d.bundle, d.cpu, d.ts_ns
)
SELECT d.bundle, d.host, d.ts_ns, d.dur_ns, d.cpu,
       CASE WHEN d.source = 'cpufreq' THEN NULL
            ELSE d.d_aperf / NULLIF(d.dur_ns, 0) * 1000.0 END AS avg_mhz,
       100.0 * d.d_mperf / NULLIF(d.d_tsc, 0) AS busy_pct,
       CASE WHEN d.source = 'cpufreq' THEN d.cur_khz / 1000.0
            ELSE d.d_tsc / NULLIF(d.dur_ns, 0) * 1000.0 * d.d_aperf / NULLIF(d.d_mperf, 0) END
         AS bzy_mhz,
       d.d_tsc / NULLIF(d.dur_ns, 0) * 1000.0 AS tsc_mhz,
       i.ipc,
       d.source
FROM d LEFT JOIN ipc i ON i.bundle = d.bundle AND i.cpu = d.cpu AND i.ts_ns = d.ts_ns
WHERE d.dur_ns IS NOT NULL
ORDER BY bundle, cpu, ts_ns;
