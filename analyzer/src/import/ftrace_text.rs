//! Importer of ftrace text: `trace`/`trace_pipe` lines
//! (`comm-tid [cpu] flags secs.frac: event: fields`, optionally with a `(tgid)` column) and
//! `trace-cmd report` lines (same prefix, no flags, plugin-formatted sched events). Every event
//! goes to `ftrace_event` with its `key=value` fields typed (integers apart from strings); the
//! hot events also go to their typed tables, as the recorder writes them.

use perfpack_schema::tables::{
    self, BlockRq, BlockRqBuilder, FtraceEvent, FtraceEventBuilder, SchedProcess,
    SchedProcessBuilder, SchedSwitch, SchedSwitchBuilder, SchedWakeup, SchedWakeupBuilder, Syscall,
    SyscallBuilder,
};
use perfpack_schema::{BundleWriter, syscalls_x86_64};

use super::{Lines, Report, SEGMENT_ROWS, parse_cpu, parse_seconds_ns};

/// The common prefix of an event line (also built by the perf script importer for tracepoint
/// samples, whose payload is printed the same way).
#[derive(Debug, PartialEq)]
pub(super) struct Prefix<'a> {
    pub comm: Option<&'a str>,
    pub tid: i32,
    pub tgid: Option<i32>,
    pub cpu: i32,
    pub ts_ns: i64,
    /// The tracepoint system where the text says it (perf script does, ftrace text does not).
    pub system: Option<&'a str>,
    pub name: &'a str,
    pub body: &'a str,
}

fn parse_prefix(line: &str) -> Option<Prefix<'_>> {
    // The CPU column `[NNN]` is the first bracketed number after the task.
    let mut search = 0;
    let (open, close) = loop {
        let open = search + line[search..].find('[')?;
        let close = open + line[open..].find(']')?;
        if close > open + 1 && line[open + 1..close].bytes().all(|b| b.is_ascii_digit()) {
            break (open, close);
        }
        search = close;
    };
    let cpu = parse_cpu(&line[open + 1..close])?;
    let mut task = line[..open].trim_end();
    let mut tgid = None;
    if task.ends_with(')')
        && let Some(p) = task.rfind('(')
    {
        let t = task[p + 1..task.len() - 1].trim();
        tgid = if t.bytes().all(|b| b == b'-') {
            None
        } else {
            Some(t.parse().ok()?)
        };
        task = task[..p].trim_end();
    }
    let task = task.trim_start();
    let (comm, tid) = task.rsplit_once('-')?;
    let tid: i32 = tid.parse().ok()?;
    let comm = (comm != "<...>" && !comm.is_empty()).then_some(comm);

    let mut rest = line[close + 1..].trim_start();
    // Optional irq/preempt flags (`d..2.`), then `secs.frac:`.
    let (first, after) = rest.split_once(' ')?;
    if !first.ends_with(':') {
        rest = after.trim_start();
    }
    let (ts, after) = rest.split_once(": ")?;
    let ts_ns = parse_seconds_ns(ts.trim())?;
    let after = after.trim_start();
    let (name, body) = match after.split_once(':') {
        Some((n, b)) if !n.contains(' ') => (n, b.trim()),
        _ => return None,
    };
    Some(Prefix {
        comm,
        tid,
        tgid,
        cpu,
        ts_ns,
        system: None,
        name,
        body,
    })
}

/// The tracepoint system of an event name (text output carries only the name).
fn system_of(name: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("sched_", "sched"),
        ("block_", "block"),
        ("sys_enter_", "syscalls"),
        ("sys_exit_", "syscalls"),
        ("irq_handler_", "irq"),
        ("softirq_", "irq"),
        ("workqueue_", "workqueue"),
        ("writeback_", "writeback"),
        ("ext4_", "ext4"),
        ("xfs_", "xfs"),
        ("net_dev_", "net"),
        ("netif_", "net"),
        ("tcp_", "tcp"),
        ("hrtimer_", "timer"),
        ("timer_", "timer"),
        ("mm_page_", "kmem"),
        ("kmalloc", "kmem"),
        ("kfree", "kmem"),
        ("mm_vmscan_", "vmscan"),
        ("cpu_idle", "power"),
        ("cpu_frequency", "power"),
        ("signal_", "signal"),
        ("task_", "task"),
    ];
    match name {
        "sys_enter" | "sys_exit" => "raw_syscalls",
        _ => PREFIXES
            .iter()
            .find(|(p, _)| name.starts_with(p))
            .map_or("unknown", |(_, s)| s),
    }
}

/// Fields of an event body: `key=value` words (a value runs to the next `key=`), or
/// `key: value,` lists as the syscalls events print them.
fn parse_fields(body: &str) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    if body.contains('=') {
        let mut current: Option<(&str, usize, usize)> = None;
        let mut pos = 0;
        for word in body.split(' ') {
            let start = pos;
            pos += word.len() + 1;
            if word.is_empty() || word == "==>" {
                continue;
            }
            let key = word.split_once('=').map(|(k, _)| k).filter(|k| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            match key {
                Some(k) => {
                    if let Some((k0, s, e)) = current.take() {
                        out.push((k0, &body[s..e]));
                    }
                    current = Some((k, start + k.len() + 1, start + word.len()));
                }
                None => {
                    if let Some((_, _, e)) = current.as_mut() {
                        *e = start + word.len();
                    }
                }
            }
        }
        if let Some((k, s, e)) = current {
            out.push((k, &body[s..e]));
        }
    } else {
        for part in body.split(", ") {
            if let Some((k, v)) = part.split_once(": ") {
                out.push((k.trim(), v.trim()));
            }
        }
    }
    out
}

fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok().map(|u| u as i64)
    } else {
        v.parse().ok()
    }
}

fn get<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn get_int(fields: &[(&str, &str)], key: &str) -> Option<i64> {
    get(fields, key).and_then(parse_int)
}

/// `comm:tid [prio]` as trace-cmd's sched plugin prints a task.
fn plugin_task(s: &str) -> Option<(&str, i32, i32, &str)> {
    let (task, rest) = s.trim().split_once(" [")?;
    let (comm, tid) = task.rsplit_once(':')?;
    let (prio, rest) = rest.split_once(']')?;
    Some((comm, tid.parse().ok()?, prio.parse().ok()?, rest.trim()))
}

/// The ftrace tables being filled.
#[derive(Debug, Default)]
pub(super) struct Tables {
    events: FtraceEventBuilder,
    block: BlockRqBuilder,
    switches: SchedSwitchBuilder,
    wakeups: SchedWakeupBuilder,
    syscalls: SyscallBuilder,
    process: SchedProcessBuilder,
}

impl Tables {
    pub fn flush(&mut self, writer: &mut BundleWriter) -> anyhow::Result<()> {
        writer.append(tables::FTRACE_EVENT, self.events.finish())?;
        writer.append(tables::BLOCK_RQ, self.block.finish())?;
        writer.append(tables::SCHED_SWITCH, self.switches.finish())?;
        writer.append(tables::SCHED_WAKEUP, self.wakeups.finish())?;
        writer.append(tables::SYSCALL, self.syscalls.finish())?;
        writer.append(tables::SCHED_PROCESS, self.process.finish())?;
        Ok(())
    }

    /// Rows waiting to be written, all tables.
    pub fn len(&self) -> usize {
        self.events.len()
            + self.block.len()
            + self.switches.len()
            + self.wakeups.len()
            + self.syscalls.len()
            + self.process.len()
    }

    /// Adds one event; false when the body of a hot event could not be understood.
    pub fn add(&mut self, p: &Prefix<'_>) -> bool {
        let system = p.system.unwrap_or_else(|| system_of(p.name));
        let event = format!("{system}:{}", p.name);
        let mut fields = parse_fields(p.body);
        let typed_ok = match p.name {
            "sched_switch" => self.switch(p, &mut fields),
            "sched_wakeup" | "sched_wakeup_new" | "sched_waking" => self.wakeup(p, &mut fields),
            "sched_process_fork" | "sched_process_exec" | "sched_process_exit" => {
                self.process(p, &fields)
            }
            "block_io_start" | "block_rq_issue" | "block_rq_insert" | "block_rq_complete" => {
                self.block(p, &mut fields)
            }
            "sys_enter" | "sys_exit" => self.syscall(p, &mut fields),
            _ => true,
        };
        // The hot events are stored once, in their typed table (the analyzer's `ftrace_event`
        // view rebuilds them from it), as the recorder stores them; one whose line could not be
        // understood keeps what was found in `ftrace_event`.
        if typed_ok && is_typed_only(p.name) {
            return true;
        }
        let ints: Vec<(&str, i64)> = fields
            .iter()
            .filter_map(|(k, v)| parse_int(v).map(|i| (*k, i)))
            .collect();
        let strs: Vec<(&str, &str)> = fields
            .iter()
            .filter(|(_, v)| parse_int(v).is_none())
            .copied()
            .collect();
        self.events.push(&FtraceEvent {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            pid: p.tgid,
            tid: p.tid,
            comm: p.comm,
            event: &event,
            int_fields: &ints,
            str_fields: &strs,
        });
        typed_ok
    }

    fn switch<'a>(&mut self, p: &Prefix<'a>, fields: &mut Vec<(&'a str, &'a str)>) -> bool {
        if fields.is_empty() {
            // trace-cmd: `prev:tid [prio] S ==> next:tid [prio]`
            let Some((prev, next)) = p.body.split_once(" ==> ") else {
                return false;
            };
            let (Some(prev), Some(next)) = (plugin_task(prev), plugin_task(next)) else {
                return false;
            };
            fields.extend([
                ("prev_comm", prev.0),
                ("prev_state", prev.3),
                ("next_comm", next.0),
            ]);
            self.switches.push(&SchedSwitch {
                ts_ns: p.ts_ns,
                cpu: p.cpu,
                prev_tid: prev.1,
                prev_comm: prev.0,
                prev_prio: prev.2,
                prev_state: prev.3,
                next_tid: next.1,
                next_comm: next.0,
                next_prio: next.2,
            });
            return true;
        }
        let (Some(prev_tid), Some(next_tid)) =
            (get_int(fields, "prev_pid"), get_int(fields, "next_pid"))
        else {
            return false;
        };
        self.switches.push(&SchedSwitch {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            prev_tid: prev_tid as i32,
            prev_comm: get(fields, "prev_comm").unwrap_or(""),
            prev_prio: get_int(fields, "prev_prio").unwrap_or(0) as i32,
            prev_state: get(fields, "prev_state").unwrap_or(""),
            next_tid: next_tid as i32,
            next_comm: get(fields, "next_comm").unwrap_or(""),
            next_prio: get_int(fields, "next_prio").unwrap_or(0) as i32,
        });
        true
    }

    fn wakeup<'a>(&mut self, p: &Prefix<'a>, fields: &mut Vec<(&'a str, &'a str)>) -> bool {
        let new = p.name == "sched_wakeup_new";
        if p.name == "sched_waking" {
            return true;
        }
        let (comm, tid, prio, target) = if fields.is_empty() {
            // trace-cmd: `comm:tid [prio] CPU:003` (success flag optional)
            let Some((comm, tid, prio, rest)) = plugin_task(p.body) else {
                return false;
            };
            let Some(cpu) = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("CPU:"))
                .and_then(|c| c.parse::<i32>().ok())
            else {
                return false;
            };
            fields.push(("comm", comm));
            (comm, tid, prio, cpu)
        } else {
            let (Some(tid), Some(cpu)) = (get_int(fields, "pid"), get_int(fields, "target_cpu"))
            else {
                return false;
            };
            (
                get(fields, "comm").unwrap_or(""),
                tid as i32,
                get_int(fields, "prio").unwrap_or(0) as i32,
                cpu as i32,
            )
        };
        self.wakeups.push(&SchedWakeup {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            waker_tid: p.tid,
            tid,
            comm,
            prio,
            target_cpu: target,
            new,
        });
        true
    }

    fn process(&mut self, p: &Prefix<'_>, fields: &[(&str, &str)]) -> bool {
        let event = p.name.trim_start_matches("sched_process_");
        // fork, exec and exit all name their thread `pid=`.
        let Some(tid) = get_int(fields, "pid") else {
            return false;
        };
        self.process.push(&SchedProcess {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            event,
            tid: tid as i32,
            comm: get(fields, "comm").or(p.comm).unwrap_or(""),
            child_tid: get_int(fields, "child_pid").map(|c| c as i32),
            child_comm: get(fields, "child_comm"),
            filename: get(fields, "filename"),
        });
        true
    }

    /// `259,0 WS 4096 () 123456 + 8 [dd]` (issue/insert) or `259,0 WS () 123456 + 8 [0]`
    /// (complete); newer kernels add an ioprio word before the bracket.
    fn block<'a>(&mut self, p: &Prefix<'a>, fields: &mut Vec<(&'a str, &'a str)>) -> bool {
        let phase = match p.name {
            "block_io_start" => "start",
            n => n.trim_start_matches("block_rq_"),
        };
        // The bracketed tag at the end is a comm (which may hold spaces) or an error number.
        let Some((main, tag)) = p.body.strip_suffix(']').and_then(|b| b.rsplit_once(" [")) else {
            return false;
        };
        let words: Vec<&str> = main.split_whitespace().collect();
        let parsed = (|| {
            let (maj, min) = words.first()?.split_once(',')?;
            let rwbs = *words.get(1)?;
            let mut i = 2;
            let mut bytes = None;
            if phase != "complete" {
                bytes = Some(words.get(i)?.parse::<u64>().ok()?);
                i += 1;
            }
            // The command in parentheses may hold spaces.
            while !words.get(i)?.ends_with(')') {
                i += 1;
            }
            i += 1;
            let sector: u64 = words.get(i)?.parse().ok()?;
            if *words.get(i + 1)? != "+" {
                return None;
            }
            let nr_sector: u32 = words.get(i + 2)?.parse().ok()?;
            Some((maj, min, rwbs, bytes, sector, nr_sector))
        })();
        let Some((maj, min, rwbs, bytes, sector, nr_sector)) = parsed else {
            return false;
        };
        let dev = format!("{maj}:{min}");
        let error = if phase == "complete" {
            tag.parse::<i32>().ok()
        } else {
            None
        };
        fields.extend([("rwbs", rwbs)]);
        self.block.push(&BlockRq {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            pid: p.tgid,
            tid: p.tid,
            comm: if phase == "complete" {
                p.comm
            } else {
                Some(tag)
            },
            phase,
            dev: &dev,
            disk: None,
            sector,
            nr_sector,
            bytes: bytes.unwrap_or(u64::from(nr_sector) * 512),
            rwbs,
            error,
        });
        true
    }

    /// `NR 0 (3, 7ffd, 10, 0, 0, 0)` (enter, hex args) or `NR 0 = 10` (exit).
    fn syscall<'a>(&mut self, p: &Prefix<'a>, fields: &mut Vec<(&'a str, &'a str)>) -> bool {
        let Some(rest) = p.body.strip_prefix("NR ") else {
            return false;
        };
        let (nr_text, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(nr) = nr_text.parse::<i32>() else {
            return false;
        };
        let name = usize::try_from(nr)
            .ok()
            .and_then(|i| syscalls_x86_64::NAMES.get(i))
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("sys_{nr}"), |n| (*n).to_string());
        let enter = p.name == "sys_enter";
        let mut args = [None; 6];
        let mut ret = None;
        if enter {
            let inner = rest.trim().trim_start_matches('(').trim_end_matches(')');
            for (slot, a) in args.iter_mut().zip(inner.split(',')) {
                match u64::from_str_radix(a.trim(), 16) {
                    Ok(v) => *slot = Some(v),
                    Err(_) => return false,
                }
            }
        } else {
            match rest
                .trim()
                .strip_prefix("= ")
                .and_then(|r| r.trim().parse::<i64>().ok())
            {
                Some(r) => ret = Some(r),
                None => return false,
            }
        }
        fields.push(("NR", nr_text));
        self.syscalls.push(&Syscall {
            ts_ns: p.ts_ns,
            cpu: p.cpu,
            pid: p.tgid,
            tid: p.tid,
            comm: p.comm,
            phase: if enter { "enter" } else { "exit" },
            nr,
            name: &name,
            ret,
            arg0: args[0],
            arg1: args[1],
            arg2: args[2],
            arg3: args[3],
            arg4: args[4],
            arg5: args[5],
        });
        true
    }
}

/// Events stored in their typed table only (as the recorder stores them).
fn is_typed_only(name: &str) -> bool {
    matches!(
        name,
        "sched_switch"
            | "sched_wakeup"
            | "sched_wakeup_new"
            | "sched_waking"
            | "sys_enter"
            | "sys_exit"
    )
}

/// Lines of headers and bookkeeping that carry no event.
fn is_header(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('#')
        || t.starts_with("cpus=")
        || t.starts_with("version =")
        || t.starts_with("trace-cmd:")
        || (t.starts_with("CPU ") && (t.ends_with(" is empty") || t.contains("events lost")))
        || t.starts_with("CPU:")
}

pub fn import<R: std::io::BufRead>(
    lines: &mut Lines<R>,
    writer: &mut BundleWriter,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.record_kind = "events";
    let mut t = Tables::default();
    let mut saw_tgid = false;
    loop {
        let line_no = lines.line_no + 1;
        let Some(line) = lines.next_line()? else {
            break;
        };
        if line.trim().is_empty() || is_header(&line) {
            continue;
        }
        let Some(p) = parse_prefix(&line) else {
            report.unparsed(line_no, &line);
            continue;
        };
        saw_tgid |= p.tgid.is_some();
        if !t.add(&p) {
            // Still in ftrace_event with whatever fields were found; the typed row is missing.
            report.unparsed(line_no, &line);
        }
        report.records += 1;
        report.saw(Some(p.ts_ns), Some(p.cpu));
        if t.len() >= SEGMENT_ROWS {
            t.flush(writer)?;
            writer.close_segment()?;
        }
    }
    if !saw_tgid {
        report.note("no tgid column (trace option record-tgid): pid is null");
    }
    report.note("event systems are inferred from event names; syscall names assume x86_64");
    t.flush(writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_trace_and_trace_cmd() {
        let p = parse_prefix(
            "          <idle>-0       [001] d..2. 12345.678901: sched_switch: prev_comm=swapper/1 prev_pid=0",
        )
        .unwrap();
        assert_eq!(
            (p.comm, p.tid, p.cpu, p.ts_ns, p.name),
            (Some("<idle>"), 0, 1, 12_345_678_901_000, "sched_switch")
        );
        assert_eq!(
            parse_prefix("  <...>-5 [000] .... 1.0: x: y").unwrap().comm,
            None
        );
        assert_eq!(p.body, "prev_comm=swapper/1 prev_pid=0");
        let p = parse_prefix("  C2 Compiler-th-77  (  70) [003]  1.5: sys_exit: NR 0 = 1").unwrap();
        assert_eq!(
            (p.comm, p.tid, p.tgid, p.cpu),
            (Some("C2 Compiler-th"), 77, Some(70), 3)
        );
        let p = parse_prefix(
            "    bash-1234  [000]  1234.567890: block_rq_issue: 259,0 WS 4096 () 8 + 8 [bash]",
        )
        .unwrap();
        assert_eq!((p.comm, p.name), (Some("bash"), "block_rq_issue"));
        assert!(parse_prefix("not an event").is_none());
    }

    #[test]
    fn block_requests_of_threads_with_spaces_in_their_names() {
        let line = "  opt cgu.0-5221  [000] 13500.810198: block_rq_issue:       254,0 RA 4096 () 9922288 + 8 0x2,0,4 [opt cgu.0]";
        let p = parse_prefix(line).unwrap();
        let mut t = Tables::default();
        assert!(t.add(&p));
        let batch = t.block.finish();
        let comm = batch.column_by_name("comm").unwrap();
        let comm = comm
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(comm.value(0), "opt cgu.0");
        let sector = batch.column_by_name("sector").unwrap();
        let sector = sector
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .unwrap();
        assert_eq!(sector.value(0), 9922288);
        let line = "  <idle>-0 [001] 1.5: block_rq_complete: 254,0 RM () 23215256 + 8 0x2,0,4 [0]";
        assert!(t.add(&parse_prefix(line).unwrap()));
        assert!(
            !t.add(&parse_prefix("  x-1 [001] 1.5: block_rq_complete: 254,0 RM () 8 [0").unwrap())
        );
    }

    #[test]
    fn fields_with_spaces_in_values() {
        let f = parse_fields(
            "prev_comm=C2 CompilerThre prev_pid=7 prev_state=S ==> next_comm=x next_pid=0",
        );
        assert_eq!(
            f,
            vec![
                ("prev_comm", "C2 CompilerThre"),
                ("prev_pid", "7"),
                ("prev_state", "S"),
                ("next_comm", "x"),
                ("next_pid", "0")
            ]
        );
        let f = parse_fields("dfd: 0xffffff9c, filename: 0x7ffd, flags: 0x0, mode: 0x0");
        assert_eq!(f[0], ("dfd", "0xffffff9c"));
        assert_eq!(parse_int("0xffffff9c"), Some(0xffffff9c));
    }
}
