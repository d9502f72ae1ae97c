-- Every captured tracepoint event in one generic shape, as DESIGN's `ftrace_event`. The hot
-- events (raw_syscalls sys_enter/sys_exit, sched_switch, sched_wakeup, sched_wakeup_new) are
-- stored once, in their typed tables, and rebuilt here from them; every other event is stored
-- in the bundle's `ftrace_event` files, which SQL reads as `ftrace_event_stored`.
-- Needs: ftrace_event_stored, syscall, sched_switch, sched_wakeup, thread (pid of threads).

-- Every tracepoint event with its fields by name.
-- Rebuilt rows differ from what the kernel printed in two ways: `prev_state` of a switch is
-- the letters of `sched_switch.prev_state` (a string field, not the number), and `pid`/`comm`
-- of switches and wakeups come from the `thread` table (null where it does not know the
-- thread; the idle task is pid 0, `swapper/CPU`). System call arguments are the raw 64-bit words as signed integers, as the generic
-- decoder writes them.
--
-- Columns:
--   ts_ns       event time, CLOCK_MONOTONIC ns
--   cpu         CPU the event was recorded on
--   pid         process of the current task, when known
--   tid         thread of the current task (common_pid)
--   comm        name of the current task, when known
--   event       system:name
--   int_fields  integer fields by name
--   str_fields  string fields by name
--   host        host
--   bundle      bundle
CREATE VIEW ftrace_event AS
WITH t AS (
  SELECT bundle, tid, MAX(pid) AS pid, MAX(comm) AS comm FROM thread GROUP BY bundle, tid
),
sc AS (
  SELECT *,
    CASE WHEN arg0 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg0 AS BIGINT) - 1
         ELSE CAST(arg0 AS BIGINT) END AS a0,
    CASE WHEN arg1 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg1 AS BIGINT) - 1
         ELSE CAST(arg1 AS BIGINT) END AS a1,
    CASE WHEN arg2 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg2 AS BIGINT) - 1
         ELSE CAST(arg2 AS BIGINT) END AS a2,
    CASE WHEN arg3 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg3 AS BIGINT) - 1
         ELSE CAST(arg3 AS BIGINT) END AS a3,
    CASE WHEN arg4 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg4 AS BIGINT) - 1
         ELSE CAST(arg4 AS BIGINT) END AS a4,
    CASE WHEN arg5 > 9223372036854775807 THEN -CAST(18446744073709551615 - arg5 AS BIGINT) - 1
         ELSE CAST(arg5 AS BIGINT) END AS a5
  FROM syscall
)
SELECT ts_ns, cpu, pid, tid, comm, event, int_fields, str_fields, host, bundle
FROM ftrace_event_stored
UNION ALL
SELECT ts_ns, cpu, pid, tid, comm, 'raw_syscalls:sys_enter',
  map(['id', 'args[0]', 'args[1]', 'args[2]', 'args[3]', 'args[4]', 'args[5]'],
      [CAST(nr AS BIGINT), a0, a1, a2, a3, a4, a5]),
  map(arrow_cast(make_array(), 'List(Utf8)'), arrow_cast(make_array(), 'List(Utf8)')),
  host, bundle
FROM sc WHERE phase = 'enter'
UNION ALL
SELECT ts_ns, cpu, pid, tid, comm, 'raw_syscalls:sys_exit',
  map(['id', 'ret'], [CAST(nr AS BIGINT), ret]),
  map(arrow_cast(make_array(), 'List(Utf8)'), arrow_cast(make_array(), 'List(Utf8)')),
  host, bundle
FROM syscall WHERE phase = 'exit'
UNION ALL
SELECT s.ts_ns, s.cpu, CASE WHEN s.prev_tid = 0 THEN 0 ELSE t.pid END, s.prev_tid, s.prev_comm, 'sched:sched_switch',
  map(['prev_pid', 'prev_prio', 'next_pid', 'next_prio'],
      [CAST(s.prev_tid AS BIGINT), CAST(s.prev_prio AS BIGINT), CAST(s.next_tid AS BIGINT),
       CAST(s.next_prio AS BIGINT)]),
  map(['prev_comm', 'prev_state', 'next_comm'], [s.prev_comm, s.prev_state, s.next_comm]),
  s.host, s.bundle
FROM sched_switch s LEFT JOIN t ON t.bundle = s.bundle AND t.tid = s.prev_tid
UNION ALL
SELECT w.ts_ns, w.cpu, CASE WHEN w.waker_tid = 0 THEN 0 ELSE t.pid END, w.waker_tid,
  CASE WHEN w.waker_tid = 0 THEN concat('swapper/', w.cpu) ELSE t.comm END,
  CASE WHEN w.new THEN 'sched:sched_wakeup_new' ELSE 'sched:sched_wakeup' END,
  map(['pid', 'prio', 'target_cpu'],
      [CAST(w.tid AS BIGINT), CAST(w.prio AS BIGINT), CAST(w.target_cpu AS BIGINT)]),
  map(['comm'], [w.comm]),
  w.host, w.bundle
FROM sched_wakeup w LEFT JOIN t ON t.bundle = w.bundle AND t.tid = w.waker_tid
ORDER BY bundle, ts_ns, cpu;
