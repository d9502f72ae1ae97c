-- The procfs counters of the sar/mpstat/iostat/vmstat family, turned into per-interval figures:
-- counters become deltas and rates between two consecutive readings, gauges stay as read.
-- Needs: sys_counter (the recorder reads /proc every second by default).

-- Every sys_counter reading with its change since the previous reading of the same counter.
--
-- Columns:
--   bundle      bundle
--   host        host
--   ts_ns       time of the reading, CLOCK_MONOTONIC ns
--   dur_ns      time since the previous reading of this counter, ns (null for the first)
--   source      procfs file family (`stat`, `meminfo`, `diskstats`, ...)
--   name        counter name, with its unit
--   instance    CPU, device or interface; `all` for machine-wide values
--   kind        `counter` (monotonic) or `gauge`
--   value       the value read
--   delta       change since the previous reading (counters only)
--   rate_per_s  delta per second (counters only)
CREATE VIEW sys_counter_delta AS
WITH s AS (
  SELECT bundle, host, ts_ns, source, name, COALESCE(NULLIF(instance, ''), 'all') AS instance,
         kind, value
  FROM sys_counter
),
d AS (
  SELECT *,
         ts_ns - LAG(ts_ns) OVER w AS dur_ns,
         value - LAG(value) OVER w AS d
  FROM s
  WINDOW w AS (PARTITION BY bundle, source, name, instance ORDER BY ts_ns)
)
SELECT bundle, host, ts_ns, dur_ns, source, name, instance, kind, value,
       CASE WHEN kind = 'counter' THEN d END AS delta,
       CASE WHEN kind = 'counter' THEN d * 1e9 / NULLIF(dur_ns, 0) END AS rate_per_s
FROM d
ORDER BY bundle, source, name, instance, ts_ns;

-- CPU utilization per CPU (and `all`) per interval, as mpstat prints it: the share of each
-- kind of time in /proc/stat over the interval.
--
-- Columns:
--   bundle      bundle
--   host        host
--   ts_ns       end of the interval, CLOCK_MONOTONIC ns
--   dur_ns      length of the interval, ns
--   cpu         `cpu0`, `cpu1`, ... or `all`
--   usr_pct     user time (nice included), %
--   sys_pct     system time (irq and softirq included), %
--   iowait_pct  idle while waiting for I/O, %
--   steal_pct   stolen by the hypervisor, %
--   idle_pct    idle, %
--   busy_pct    100 − idle − iowait, %
CREATE VIEW cpu_utilization AS
WITH p AS (
  SELECT bundle, host, ts_ns, MAX(dur_ns) AS dur_ns, instance AS cpu,
         SUM(CASE WHEN name IN ('user_ns', 'nice_ns') THEN delta ELSE 0 END) AS usr,
         SUM(CASE WHEN name IN ('system_ns', 'irq_ns', 'softirq_ns') THEN delta ELSE 0 END) AS sys,
         SUM(CASE WHEN name = 'iowait_ns' THEN delta ELSE 0 END) AS iowait,
         SUM(CASE WHEN name = 'steal_ns' THEN delta ELSE 0 END) AS steal,
         SUM(CASE WHEN name = 'idle_ns' THEN delta ELSE 0 END) AS idle,
         SUM(CASE WHEN name IN ('user_ns', 'nice_ns', 'system_ns', 'irq_ns', 'softirq_ns',
                                'iowait_ns', 'steal_ns', 'idle_ns') THEN delta ELSE 0 END) AS total
  FROM sys_counter_delta
  WHERE source = 'stat' AND name LIKE '%\_ns' ESCAPE '\' AND delta IS NOT NULL
  GROUP BY bundle, host, ts_ns, instance
)
SELECT bundle, host, ts_ns, dur_ns, cpu,
       100.0 * usr / NULLIF(total, 0) AS usr_pct,
       100.0 * sys / NULLIF(total, 0) AS sys_pct,
       100.0 * iowait / NULLIF(total, 0) AS iowait_pct,
       100.0 * steal / NULLIF(total, 0) AS steal_pct,
       100.0 * idle / NULLIF(total, 0) AS idle_pct,
       100.0 - 100.0 * (idle + iowait) / NULLIF(total, 0) AS busy_pct
FROM p
ORDER BY bundle, cpu, ts_ns;

-- Disk utilization, saturation and throughput per disk per interval, as `iostat -x` prints
-- them, from /proc/diskstats deltas. util_pct is capped at 100 as iostat caps it: the kernel's
-- io_ticks and the read time are not taken at one instant, so a raw ratio can pass 100 a little.
--
-- Columns:
--   bundle        bundle
--   host          host
--   ts_ns         end of the interval, CLOCK_MONOTONIC ns
--   dur_ns        length of the interval, ns
--   disk          device name
--   r_per_s       reads completed per second
--   w_per_s       writes completed per second
--   iops          reads + writes per second
--   rkb_per_s     KiB read per second
--   wkb_per_s     KiB written per second
--   r_await_ms    mean time of a read, queue included, ms
--   w_await_ms    mean time of a write, queue included, ms
--   await_ms      mean time of a request, ms
--   aqu_sz        average number of requests in flight (queue size)
--   util_pct      share of the interval with at least one request in flight, %, capped at 100 as iostat does
CREATE VIEW disk_utilization AS
WITH p AS (
  SELECT bundle, host, ts_ns, MAX(dur_ns) AS dur_ns, instance AS disk,
         SUM(CASE WHEN name = 'reads_completed' THEN delta END) AS reads,
         SUM(CASE WHEN name = 'writes_completed' THEN delta END) AS writes,
         SUM(CASE WHEN name = 'sectors_read' THEN delta END) AS sectors_read,
         SUM(CASE WHEN name = 'sectors_written' THEN delta END) AS sectors_written,
         SUM(CASE WHEN name = 'read_time_ns' THEN delta END) AS read_ns,
         SUM(CASE WHEN name = 'write_time_ns' THEN delta END) AS write_ns,
         SUM(CASE WHEN name = 'weighted_io_time_ns' THEN delta END) AS weighted_ns,
         SUM(CASE WHEN name = 'io_time_ns' THEN delta END) AS io_ns
  FROM sys_counter_delta
  WHERE source = 'diskstats' AND delta IS NOT NULL
  GROUP BY bundle, host, ts_ns, instance
)
SELECT bundle, host, ts_ns, dur_ns, disk,
       reads * 1e9 / dur_ns AS r_per_s,
       writes * 1e9 / dur_ns AS w_per_s,
       (reads + writes) * 1e9 / dur_ns AS iops,
       sectors_read * 512.0 / 1024.0 * 1e9 / dur_ns AS rkb_per_s,
       sectors_written * 512.0 / 1024.0 * 1e9 / dur_ns AS wkb_per_s,
       read_ns / 1e6 / NULLIF(reads, 0) AS r_await_ms,
       write_ns / 1e6 / NULLIF(writes, 0) AS w_await_ms,
       (read_ns + write_ns) / 1e6 / NULLIF(reads + writes, 0) AS await_ms,
       weighted_ns / dur_ns AS aqu_sz,
       LEAST(100.0, 100.0 * io_ns / dur_ns) AS util_pct
FROM p
WHERE dur_ns > 0
ORDER BY bundle, disk, ts_ns;

-- Memory and paging per interval, as `sar -r -B -W` and vmstat show them.
--
-- Columns:
--   bundle               bundle
--   host                 host
--   ts_ns                time of the reading, CLOCK_MONOTONIC ns
--   total_bytes          MemTotal, bytes
--   free_bytes           MemFree, bytes
--   available_bytes      MemAvailable, bytes
--   buffers_bytes        Buffers, bytes
--   cached_bytes         Cached (page cache), bytes
--   dirty_bytes          Dirty, bytes
--   used_pct             (total − available) / total, %
--   swap_used_bytes      SwapTotal − SwapFree, bytes
--   pgfault_per_s        page faults per second
--   pgmajfault_per_s     major (I/O) page faults per second
--   pswpin_per_s         pages swapped in per second
--   pswpout_per_s        pages swapped out per second
--   pgscan_kswapd_per_s  pages scanned by kswapd per second (memory pressure)
--   oom_kill             OOM kills in the interval
CREATE VIEW memory AS
SELECT bundle, host, ts_ns,
       MAX(CASE WHEN name = 'MemTotal_bytes' THEN value END) AS total_bytes,
       MAX(CASE WHEN name = 'MemFree_bytes' THEN value END) AS free_bytes,
       MAX(CASE WHEN name = 'MemAvailable_bytes' THEN value END) AS available_bytes,
       MAX(CASE WHEN name = 'Buffers_bytes' THEN value END) AS buffers_bytes,
       MAX(CASE WHEN name = 'Cached_bytes' THEN value END) AS cached_bytes,
       MAX(CASE WHEN name = 'Dirty_bytes' THEN value END) AS dirty_bytes,
       100.0 * (MAX(CASE WHEN name = 'MemTotal_bytes' THEN value END)
                - MAX(CASE WHEN name = 'MemAvailable_bytes' THEN value END))
         / NULLIF(MAX(CASE WHEN name = 'MemTotal_bytes' THEN value END), 0) AS used_pct,
       MAX(CASE WHEN name = 'SwapTotal_bytes' THEN value END)
         - MAX(CASE WHEN name = 'SwapFree_bytes' THEN value END) AS swap_used_bytes,
       MAX(CASE WHEN name = 'pgfault' THEN rate_per_s END) AS pgfault_per_s,
       MAX(CASE WHEN name = 'pgmajfault' THEN rate_per_s END) AS pgmajfault_per_s,
       MAX(CASE WHEN name = 'pswpin' THEN rate_per_s END) AS pswpin_per_s,
       MAX(CASE WHEN name = 'pswpout' THEN rate_per_s END) AS pswpout_per_s,
       MAX(CASE WHEN name = 'pgscan_kswapd' THEN rate_per_s END) AS pgscan_kswapd_per_s,
       MAX(CASE WHEN name = 'oom_kill' THEN delta END) AS oom_kill
FROM sys_counter_delta
WHERE source IN ('meminfo', 'vmstat')
GROUP BY bundle, host, ts_ns
ORDER BY bundle, ts_ns;

-- Network interface traffic, drops and errors per interval (`sar -n DEV,EDEV`).
--
-- Columns:
--   bundle            bundle
--   host              host
--   ts_ns             end of the interval, CLOCK_MONOTONIC ns
--   dur_ns            length of the interval, ns
--   interface         interface name
--   rx_pkts_per_s     packets received per second
--   tx_pkts_per_s     packets sent per second
--   rx_kb_per_s       KiB received per second
--   tx_kb_per_s       KiB sent per second
--   rx_drop_per_s     received packets dropped per second
--   tx_drop_per_s     sent packets dropped per second
--   rx_errs_per_s     receive errors per second
--   tx_errs_per_s     transmit errors per second
CREATE VIEW network AS
SELECT bundle, host, ts_ns, MAX(dur_ns) AS dur_ns, instance AS interface,
       MAX(CASE WHEN name = 'rx_packets' THEN rate_per_s END) AS rx_pkts_per_s,
       MAX(CASE WHEN name = 'tx_packets' THEN rate_per_s END) AS tx_pkts_per_s,
       MAX(CASE WHEN name = 'rx_bytes' THEN rate_per_s END) / 1024.0 AS rx_kb_per_s,
       MAX(CASE WHEN name = 'tx_bytes' THEN rate_per_s END) / 1024.0 AS tx_kb_per_s,
       MAX(CASE WHEN name = 'rx_drop' THEN rate_per_s END) AS rx_drop_per_s,
       MAX(CASE WHEN name = 'tx_drop' THEN rate_per_s END) AS tx_drop_per_s,
       MAX(CASE WHEN name = 'rx_errs' THEN rate_per_s END) AS rx_errs_per_s,
       MAX(CASE WHEN name = 'tx_errs' THEN rate_per_s END) AS tx_errs_per_s
FROM sys_counter_delta
WHERE source = 'net_dev' AND delta IS NOT NULL
GROUP BY bundle, host, ts_ns, instance
ORDER BY bundle, interface, ts_ns;

-- TCP activity, retransmits and resets per interval (`sar -n TCP,ETCP`), from /proc/net/snmp.
--
-- Columns:
--   bundle               bundle
--   host                 host
--   ts_ns                end of the interval, CLOCK_MONOTONIC ns
--   dur_ns               length of the interval, ns
--   active_opens_per_s   connections opened by this host per second (connect)
--   passive_opens_per_s  connections accepted per second
--   in_segs_per_s        segments received per second
--   out_segs_per_s       segments sent per second
--   retrans_per_s        segments retransmitted per second
--   retrans_pct          retransmitted / sent, %
--   estab_resets_per_s   established connections reset per second
--   out_rsts_per_s       resets sent per second
--   in_errs_per_s        segments received with errors per second
--   curr_estab           connections established at the reading
CREATE VIEW network_tcp AS
SELECT bundle, host, ts_ns, MAX(dur_ns) AS dur_ns,
       MAX(CASE WHEN name = 'Tcp_ActiveOpens' THEN rate_per_s END) AS active_opens_per_s,
       MAX(CASE WHEN name = 'Tcp_PassiveOpens' THEN rate_per_s END) AS passive_opens_per_s,
       MAX(CASE WHEN name = 'Tcp_InSegs' THEN rate_per_s END) AS in_segs_per_s,
       MAX(CASE WHEN name = 'Tcp_OutSegs' THEN rate_per_s END) AS out_segs_per_s,
       MAX(CASE WHEN name = 'Tcp_RetransSegs' THEN rate_per_s END) AS retrans_per_s,
       100.0 * MAX(CASE WHEN name = 'Tcp_RetransSegs' THEN delta END)
         / NULLIF(MAX(CASE WHEN name = 'Tcp_OutSegs' THEN delta END), 0) AS retrans_pct,
       MAX(CASE WHEN name = 'Tcp_EstabResets' THEN rate_per_s END) AS estab_resets_per_s,
       MAX(CASE WHEN name = 'Tcp_OutRsts' THEN rate_per_s END) AS out_rsts_per_s,
       MAX(CASE WHEN name = 'Tcp_InErrs' THEN rate_per_s END) AS in_errs_per_s,
       MAX(CASE WHEN name = 'Tcp_CurrEstab' THEN value END) AS curr_estab
FROM sys_counter_delta
WHERE source = 'snmp'
GROUP BY bundle, host, ts_ns
HAVING MAX(dur_ns) IS NOT NULL
ORDER BY bundle, ts_ns;

-- Pressure stall information per interval: the share of time some (or all) runnable tasks
-- were stalled on CPU, memory or I/O, from the `total` stall counters of /proc/pressure.
--
-- Columns:
--   bundle           bundle
--   host             host
--   ts_ns            end of the interval, CLOCK_MONOTONIC ns
--   dur_ns           length of the interval, ns
--   cpu_some_pct     time some task waited for a CPU, %
--   memory_some_pct  time some task stalled on memory, %
--   memory_full_pct  time all non-idle tasks stalled on memory, %
--   io_some_pct      time some task stalled on I/O, %
--   io_full_pct      time all non-idle tasks stalled on I/O, %
CREATE VIEW pressure AS
SELECT bundle, host, ts_ns, MAX(dur_ns) AS dur_ns,
       100.0 * MAX(CASE WHEN name = 'cpu_some_total_ns' THEN delta END) / MAX(dur_ns) AS cpu_some_pct,
       100.0 * MAX(CASE WHEN name = 'memory_some_total_ns' THEN delta END) / MAX(dur_ns) AS memory_some_pct,
       100.0 * MAX(CASE WHEN name = 'memory_full_total_ns' THEN delta END) / MAX(dur_ns) AS memory_full_pct,
       100.0 * MAX(CASE WHEN name = 'io_some_total_ns' THEN delta END) / MAX(dur_ns) AS io_some_pct,
       100.0 * MAX(CASE WHEN name = 'io_full_total_ns' THEN delta END) / MAX(dur_ns) AS io_full_pct
FROM sys_counter_delta
WHERE source = 'pressure' AND name LIKE '%total_ns' AND delta IS NOT NULL
GROUP BY bundle, host, ts_ns
ORDER BY bundle, ts_ns;
