-- Log2 latency histograms in the style of perf-tools iolatency and bcc runqlat/biolatency:
-- one row per power-of-two bucket [lo_ns, hi_ns) with its count, share and a text bar.
-- Needs: block_rq (block I/O), sched_switch and sched_wakeup (run queue), syscall (syscalls).
-- Bucket k holds latencies in [2^k, 2^(k+1)) ns; a latency of 0 ns goes to bucket 0.

-- Log2 histograms of block I/O, run-queue and system call latencies, per bundle and source.
--
-- Columns:
--   bundle   bundle
--   host     host
--   source   `block` (block_io), `runq` (runqueue_latency) or `syscall` (syscall_duration)
--   bucket   k: latencies in [2^k, 2^(k+1)) ns
--   lo_ns    bucket start, ns (inclusive)
--   hi_ns    bucket end, ns (exclusive)
--   count    events in the bucket
--   pct      share of the source's events, %
--   bar      `#` per 2.5% of the source's events, for reading in a terminal
CREATE VIEW latency_histogram AS
WITH l AS (
  SELECT bundle, host, 'block' AS source, latency_ns FROM block_io
  UNION ALL
  SELECT bundle, host, 'runq' AS source, latency_ns FROM runqueue_latency
  UNION ALL
  SELECT bundle, host, 'syscall' AS source, dur_ns AS latency_ns FROM syscall_duration
),
c AS (
  SELECT bundle, host, source,
         CAST(floor(log2(CAST(GREATEST(latency_ns, 1) AS DOUBLE))) AS INT) AS bucket,
         COUNT(*) AS count
  FROM l
  GROUP BY 1, 2, 3, 4
)
SELECT bundle, host, source, bucket,
       CAST(power(2, bucket) AS BIGINT) AS lo_ns,
       CAST(power(2, bucket + 1) AS BIGINT) AS hi_ns,
       count,
       100.0 * count / SUM(count) OVER (PARTITION BY bundle, source) AS pct,
       repeat('#', CAST(round(40.0 * count / SUM(count) OVER (PARTITION BY bundle, source)) AS INT))
         AS bar
FROM c
ORDER BY bundle, source, bucket;

-- Block I/O latency histogram over all disks (iolatency / biolatency).
--
-- Columns:
--   bundle   bundle
--   host     host
--   bucket   k: latencies in [2^k, 2^(k+1)) ns
--   lo_ns    bucket start, ns (inclusive)
--   hi_ns    bucket end, ns (exclusive)
--   count    requests in the bucket
--   pct      share of all requests, %
--   bar      `#` per 2.5% of requests
CREATE VIEW iolatency AS
SELECT bundle, host, bucket, lo_ns, hi_ns, count, pct, bar
FROM latency_histogram WHERE source = 'block'
ORDER BY bundle, bucket;

-- Run-queue latency histogram (runqlat): wakeup or preemption → switch-in.
--
-- Columns:
--   bundle   bundle
--   host     host
--   bucket   k: latencies in [2^k, 2^(k+1)) ns
--   lo_ns    bucket start, ns (inclusive)
--   hi_ns    bucket end, ns (exclusive)
--   count    waits in the bucket
--   pct      share of all waits, %
--   bar      `#` per 2.5% of waits
CREATE VIEW runqlat AS
SELECT bundle, host, bucket, lo_ns, hi_ns, count, pct, bar
FROM latency_histogram WHERE source = 'runq'
ORDER BY bundle, bucket;
