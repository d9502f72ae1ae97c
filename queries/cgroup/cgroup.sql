-- Which service: the cgroup (v2) of every sample. The recorder writes a `task_cgroup` row when a
-- thread is first sampled and whenever a sample shows it in another cgroup (the kernel's
-- PERF_SAMPLE_CGROUP), so a sample's cgroup is its thread's last row at or before it. Bundles
-- recorded before cgroups were recorded, and imported ones, have no rows: cgroup is null.
-- Needs: stack_sample, task_cgroup, cgroup.
-- `perfpack latency --by cgroup` and `--cgroup` use the same spans.

-- Each thread's cgroups over time: from one row of `task_cgroup` to the thread's next. A
-- thread's first row reaches back to the start (before its first sample it is taken to have
-- been where it was first seen), so events of a thread before its first sample have one too.
--
-- Columns:
--   bundle        bundle
--   tid           thread
--   cgroup_id     the kernel's id of the cgroup
--   cgroup        its path under the cgroup2 mount
--   container_id  the container the path names, when it names one
--   from_ns       first time in it, CLOCK_MONOTONIC ns (the smallest BIGINT for the first)
--   to_ns         when it was seen elsewhere (null: until the end)
CREATE VIEW task_cgroup_span AS
WITH t AS (
  SELECT bundle, tid, cgroup_id, ts_ns,
         ROW_NUMBER() OVER (PARTITION BY bundle, tid ORDER BY ts_ns) AS k,
         LEAD(ts_ns) OVER (PARTITION BY bundle, tid ORDER BY ts_ns) AS to_ns
  FROM task_cgroup
)
SELECT t.bundle, t.tid, t.cgroup_id, c.path AS cgroup, c.container_id,
       CASE WHEN t.k = 1 THEN -9223372036854775807 - 1 ELSE t.ts_ns END AS from_ns,
       t.to_ns
FROM t LEFT JOIN cgroup c ON c.bundle = t.bundle AND c.cgroup_id = t.cgroup_id;

-- Each stack sample with its cgroup.
--
-- Columns:
--   bundle        bundle
--   host          host
--   ts_ns         sample time, CLOCK_MONOTONIC ns
--   cpu           CPU
--   pid           process
--   tid           thread
--   comm          thread name
--   event         sampling event
--   weight        the sample's weight
--   callsite_id   leaf callsite of its stack
--   cgroup_id     the kernel's id of its thread's cgroup (null when not recorded)
--   cgroup        the cgroup's path under the cgroup2 mount (`/system.slice/ssh.service`)
--   container_id  the container the path names, when it names one
CREATE VIEW cgroup_sample AS
SELECT s.bundle, s.host, s.ts_ns, s.cpu, s.pid, s.tid, s.comm, s.event, s.weight,
       s.callsite_id, t.cgroup_id, t.cgroup, t.container_id
FROM stack_sample s
LEFT JOIN task_cgroup_span t
  ON s.bundle = t.bundle AND s.tid = t.tid
 AND s.ts_ns >= t.from_ns AND (t.to_ns IS NULL OR s.ts_ns < t.to_ns);

-- CPU time by cgroup: the samples of each bundle's CPU event (`cpu_event`) per cgroup.
--
-- Columns:
--   bundle        bundle
--   host          host
--   cgroup        cgroup path (null for samples without one)
--   container_id  the container the path names, when it names one
--   samples       CPU samples in the cgroup
--   pct           share of the bundle's CPU samples, %
--   weight        summed sample weight (ns of CPU time for cpu-clock and task-clock)
CREATE VIEW cgroup_top AS
SELECT g.bundle, g.host, g.cgroup, g.container_id,
       COUNT(*) AS samples,
       100.0 * COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY g.bundle) AS pct,
       SUM(g.weight) AS weight
FROM cgroup_sample g JOIN cpu_event e ON g.bundle = e.bundle AND g.event = e.event
GROUP BY g.bundle, g.host, g.cgroup, g.container_id
ORDER BY bundle, samples DESC, cgroup;
