-- Block I/O requests from issue to completion: the rows of iosnoop/biosnoop and the latency
-- distribution of iolatency/biolatency.
-- Needs: block_rq (block:block_rq_issue and block_rq_complete; block_rq_insert for queue time;
-- block_io_start, Linux 6.5+, for the task that made each request).
-- A request is identified by its device and start sector: in time order per (dev, sector), an
-- issue followed by a complete is one request, and an insert right before the issue gives its
-- queue time. The request is attributed to the task that made it, as biosnoop does: the task of
-- its block_io_start, else of its insert, else of its issue; the task that issued it to the
-- device (often a kworker or kblockd) is the dispatcher. Requests still in flight when the
-- capture ended have no row. The matching is the
-- built-in table `block_rq_pairs` (analyzer/src/sql/block_pairs.rs), one streaming pass per
-- bundle: the same rule as LAG/LEAD windows over (dev, sector), many times faster.

-- Each block I/O request, issue → complete, with its latency (iosnoop).
--
-- Columns:
--   bundle          bundle the request was recorded in
--   host            host the bundle was recorded on
--   ts_ns           issue time (sent to the device), CLOCK_MONOTONIC ns
--   complete_ts_ns  completion time, CLOCK_MONOTONIC ns
--   latency_ns      issue → complete (device time), ns
--   queue_ns        insert → issue (time in the I/O scheduler), ns; null without insert events
--   dev             device as major:minor
--   disk            disk name (sda, nvme0n1), when the recorder could resolve it
--   sector          start sector (512-byte units)
--   nr_sector       length in sectors
--   bytes           length, bytes
--   rwbs            operation flags (R read, W write, S sync, F flush, D discard, M metadata)
--   error           completion status, 0 = success
--   pid             process that made the request (start, else insert, else issue)
--   tid             thread that made the request
--   comm            name of the thread that made the request
--   cpu             CPU of the issue
--   dispatch_pid    process that issued it to the device (often a kworker)
--   dispatch_tid    thread that issued it to the device
--   dispatch_comm   name of the thread that issued it to the device
CREATE VIEW block_io AS
SELECT bundle, host, ts_ns, complete_ts_ns, latency_ns, queue_ns, dev, disk, sector, nr_sector,
       bytes, rwbs, error, pid, tid, comm, cpu, dispatch_pid, dispatch_tid, dispatch_comm
FROM block_rq_pairs
ORDER BY bundle, ts_ns, dev, sector;

-- Block I/O latency percentiles per disk and over all disks ("all"): exact nearest-rank
-- percentiles (the value at rank ceil(p × count)), as the truth of the fixtures and most tools
-- other than approximate sketches give them.
--
-- Columns:
--   bundle      bundle
--   host        host
--   disk        disk name (or dev when unresolved), or `all`
--   count       requests completed
--   min_ns      smallest latency, ns
--   p50_ns      median latency, ns
--   p90_ns      90th percentile latency, ns
--   p99_ns      99th percentile latency, ns
--   max_ns      largest latency, ns
--   mean_ns     mean latency, ns
CREATE VIEW block_latency_percentiles AS
WITH l AS (
  SELECT bundle, host, COALESCE(disk, dev) AS disk, latency_ns FROM block_io
  UNION ALL
  SELECT bundle, host, 'all' AS disk, latency_ns FROM block_io
),
r AS (
  SELECT bundle, host, disk, latency_ns,
         ROW_NUMBER() OVER (PARTITION BY bundle, disk ORDER BY latency_ns) AS rn,
         COUNT(*) OVER (PARTITION BY bundle, disk) AS n
  FROM l
)
SELECT bundle, host, disk,
       COUNT(*) AS count,
       MIN(latency_ns) AS min_ns,
       MIN(CASE WHEN rn >= ceil(0.50 * n) THEN latency_ns END) AS p50_ns,
       MIN(CASE WHEN rn >= ceil(0.90 * n) THEN latency_ns END) AS p90_ns,
       MIN(CASE WHEN rn >= ceil(0.99 * n) THEN latency_ns END) AS p99_ns,
       MAX(latency_ns) AS max_ns,
       AVG(latency_ns) AS mean_ns
FROM r
GROUP BY bundle, host, disk
ORDER BY bundle, disk;
