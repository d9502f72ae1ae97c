-- perf-tools iosnoop / bcc biosnoop: one line per block I/O with its latency, in issue order.
-- Needs: block_rq (the `io` or `default` preset).

-- Block I/O requests, one per line with latency in ms (iosnoop).
--
-- Columns:
--   bundle      bundle
--   host        host
--   ts_ns       issue time, CLOCK_MONOTONIC ns
--   comm        issuing thread
--   pid         issuing process
--   disk        disk name, or dev (major:minor) when unresolved
--   rwbs        operation flags
--   sector      start sector
--   bytes       request size, bytes
--   latency_ms  issue → complete, ms
CREATE VIEW iosnoop AS
SELECT bundle, host, ts_ns, comm, pid, COALESCE(disk, dev) AS disk, rwbs, sector, bytes,
       latency_ns / 1e6 AS latency_ms
FROM block_io
ORDER BY bundle, ts_ns, disk, sector;
