-- perf-tools/bcc execsnoop: new programs started during the capture.
-- Needs: sched_process (sched_process_fork/exec), thread (for command lines the recorder saw).

-- Each exec with its parent and, where recorded, its command line.
--
-- Columns:
--   bundle    bundle
--   host      host
--   ts_ns     exec time, CLOCK_MONOTONIC ns
--   pid       the process that exec'd
--   ppid      its parent (from the fork event or the thread table), when known
--   comm      name after the exec
--   filename  the program file
--   args      command line, when the recorder read it
CREATE VIEW execsnoop AS
WITH e AS (
  SELECT bundle, host, ts_ns, tid AS pid, comm, filename
  FROM sched_process WHERE event = 'exec'
),
f AS (
  SELECT bundle, child_tid, MAX(tid) AS parent FROM sched_process
  WHERE event = 'fork' GROUP BY bundle, child_tid
),
t AS (
  SELECT bundle, pid, MAX(ppid) AS ppid, MAX(cmdline) AS cmdline FROM thread
  WHERE pid = tid GROUP BY bundle, pid
)
SELECT e.bundle, e.host, e.ts_ns, e.pid, COALESCE(f.parent, t.ppid) AS ppid, e.comm,
       e.filename, t.cmdline AS args
FROM e
LEFT JOIN f ON f.bundle = e.bundle AND f.child_tid = e.pid
LEFT JOIN t ON t.bundle = e.bundle AND t.pid = e.pid
ORDER BY bundle, ts_ns, pid;
