-- bcc syscount and perf-tools syscount: system calls counted and timed, per call and per
-- process. A call's time is its enter → exit on the same thread.
-- Needs: syscall (raw_syscalls:sys_enter/sys_exit, the `syscalls` preset).

-- Each completed system call with its duration.
--
-- Columns:
--   bundle   bundle
--   host     host
--   ts_ns    entry time, CLOCK_MONOTONIC ns
--   dur_ns   entry → exit, ns
--   pid      process
--   tid      thread
--   comm     thread name
--   cpu      CPU of the entry
--   nr       system call number
--   name     system call name
--   ret      return value (negative: -errno)
CREATE VIEW syscall_duration AS
WITH seq AS (
  SELECT bundle, host, ts_ns, phase, pid, tid, comm, cpu, nr, name, ret,
         LEAD(phase) OVER w AS next_phase,
         LEAD(ts_ns) OVER w AS next_ts_ns,
         LEAD(nr) OVER w AS next_nr,
         LEAD(ret) OVER w AS next_ret
  FROM syscall
  WINDOW w AS (PARTITION BY bundle, tid ORDER BY ts_ns, phase)
)
SELECT bundle, host, ts_ns, next_ts_ns - ts_ns AS dur_ns, pid, tid, comm, cpu, nr, name,
       next_ret AS ret
FROM seq
WHERE phase = 'enter' AND next_phase = 'exit' AND next_nr = nr
ORDER BY bundle, ts_ns, tid;

-- System calls per call name: count, errors and time (syscount -L).
--
-- Columns:
--   bundle      bundle
--   host        host
--   name        system call name
--   count       completed calls
--   errors      calls that returned an error
--   total_ns    time in the call, summed, ns
--   avg_ns      mean time per call, ns
--   max_ns      longest call, ns
CREATE VIEW syscount AS
SELECT bundle, host, name, COUNT(*) AS count,
       SUM(CASE WHEN ret < 0 THEN 1 ELSE 0 END) AS errors,
       SUM(dur_ns) AS total_ns, AVG(dur_ns) AS avg_ns, MAX(dur_ns) AS max_ns
FROM syscall_duration
GROUP BY bundle, host, name
ORDER BY bundle, count DESC, name;

-- System calls per process: count, errors and time (syscount -P -L).
--
-- Columns:
--   bundle      bundle
--   host        host
--   pid         process
--   comm        name of its thread that made the most calls
--   count       completed calls
--   errors      calls that returned an error
--   total_ns    time in calls, summed, ns
CREATE VIEW syscount_by_process AS
SELECT bundle, host, pid, MAX(comm) AS comm, COUNT(*) AS count,
       SUM(CASE WHEN ret < 0 THEN 1 ELSE 0 END) AS errors,
       SUM(dur_ns) AS total_ns
FROM syscall_duration
GROUP BY bundle, host, pid
ORDER BY bundle, count DESC, pid;
