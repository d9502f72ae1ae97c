//! Decodes raw ftrace event payloads with their formats into `ftrace_event` rows (every field
//! by name, integers typed) and the typed tables of the hot events (`block_rq`, `sched_switch`,
//! `sched_wakeup`, `syscall`, `sched_process`).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use perfpack_schema::fxhash::FxHashMap;

use perfpack_schema::tables::{
    BlockRq, BlockRqBuilder, FtraceEvent, FtraceEventBuilder, FuncCountBuilder, FuncGraph,
    FuncGraphBuilder, SchedProcess, SchedProcessBuilder, SchedSwitch, SchedSwitchBuilder,
    SchedWakeup, SchedWakeupBuilder, Syscall, SyscallBuilder,
};

use super::format::{EventFormat, Field};
use perfpack_schema::syscalls_x86_64;

/// Which typed table an event feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Block(&'static str),
    Switch,
    Wakeup {
        new: bool,
    },
    SysEnter,
    SysExit,
    Process(&'static str),
    /// The function tracer's `ftrace:function` (counted, `--funccount`).
    Function,
    /// The function_graph tracer's `ftrace:funcgraph_entry` (the exit carries all) and
    /// `ftrace:funcgraph_exit` (`--funcgraph`).
    GraphEntry,
    GraphExit,
    Other,
}

impl Kind {
    /// The fields of the events that are stored in their typed table only (not also in
    /// `ftrace_event`, which the analyzer rebuilds from the typed rows); `None` for events that
    /// go to `ftrace_event` as well.
    fn typed_only_fields(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::Switch => Some(&[
                "prev_comm",
                "prev_pid",
                "prev_prio",
                "prev_state",
                "next_comm",
                "next_pid",
                "next_prio",
            ]),
            // `success` (kernels before 4.x) was always 1.
            Kind::Wakeup { .. } => Some(&["comm", "pid", "prio", "target_cpu", "success"]),
            Kind::SysEnter => Some(&["id", "args"]),
            Kind::SysExit => Some(&["id", "ret"]),
            Kind::Block(_)
            | Kind::Process(_)
            | Kind::Function
            | Kind::GraphEntry
            | Kind::GraphExit
            | Kind::Other => None,
        }
    }

    pub fn of(system: &str, name: &str) -> Kind {
        match (system, name) {
            ("block", "block_io_start") => Kind::Block("start"),
            ("block", "block_rq_insert") => Kind::Block("insert"),
            ("block", "block_rq_issue") => Kind::Block("issue"),
            ("block", "block_rq_complete") => Kind::Block("complete"),
            ("sched", "sched_switch") => Kind::Switch,
            ("sched", "sched_wakeup") => Kind::Wakeup { new: false },
            ("sched", "sched_wakeup_new") => Kind::Wakeup { new: true },
            ("raw_syscalls", "sys_enter") => Kind::SysEnter,
            ("raw_syscalls", "sys_exit") => Kind::SysExit,
            ("sched", "sched_process_fork") => Kind::Process("fork"),
            ("sched", "sched_process_exec") => Kind::Process("exec"),
            ("sched", "sched_process_exit") => Kind::Process("exit"),
            ("ftrace", "function") => Kind::Function,
            ("ftrace", "funcgraph_entry") => Kind::GraphEntry,
            ("ftrace", "funcgraph_exit") => Kind::GraphExit,
            _ => Kind::Other,
        }
    }
}

/// An enabled event: its format, `system:name`, and typed table.
#[derive(Debug)]
pub struct Event {
    pub format: Arc<EventFormat>,
    pub full_name: String,
    pub kind: Kind,
    /// `name[i]` of every element of integer array fields, in field order (built once).
    elem_names: Vec<String>,
    /// Stored in its typed table only: high-rate events whose every field the typed table
    /// keeps, written once instead of twice (half the recorder's work and bytes for them).
    pub typed_only: bool,
    /// Fields of a typed-only event that its typed table has no column for (a kernel newer
    /// than this recorder): not kept, and said so in the manifest.
    pub dropped_fields: Vec<String>,
}

impl Event {
    pub fn new(format: EventFormat) -> Event {
        let elem_names = format
            .fields
            .iter()
            .filter(|f| f.array_len > 0 && !f.data_loc && !f.is_string())
            .flat_map(|f| (0..f.array_len).map(move |i| format!("{}[{i}]", f.name)))
            .collect();
        let kind = Kind::of(&format.system, &format.name);
        let covered = kind.typed_only_fields();
        let dropped_fields = covered
            .map(|known| {
                format
                    .fields
                    .iter()
                    .filter(|f| !known.contains(&f.name.as_str()))
                    .map(|f| f.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Event {
            full_name: format!("{}:{}", format.system, format.name),
            kind,
            format: Arc::new(format),
            elem_names,
            typed_only: covered.is_some(),
            dropped_fields,
        }
    }
}

/// Rows of the open segment.
#[derive(Debug, Default)]
pub struct Rows {
    pub ftrace: FtraceEventBuilder,
    pub block: BlockRqBuilder,
    pub switch: SchedSwitchBuilder,
    pub wakeup: SchedWakeupBuilder,
    pub syscall: SyscallBuilder,
    pub process: SchedProcessBuilder,
    pub func_graph: FuncGraphBuilder,
    pub func_count: FuncCountBuilder,
    /// Calls per (CPU, function address) since the last interval (`--funccount`).
    pub func_calls: FxHashMap<(u32, u64), u64>,
}

impl Rows {
    /// Rows held in all builders.
    pub fn n_rows(&self) -> usize {
        self.ftrace.len()
            + self.block.len()
            + self.switch.len()
            + self.wakeup.len()
            + self.syscall.len()
            + self.process.len()
            + self.func_graph.len()
            + self.func_count.len()
    }
}

/// Reads an integer field (sign-extended when the format says signed).
pub fn int(payload: &[u8], f: &Field) -> Option<i64> {
    int_at(payload, f.offset, f.size, f.signed)
}

fn int_at(p: &[u8], at: usize, size: usize, signed: bool) -> Option<i64> {
    let b = p.get(at..at.checked_add(size)?)?;
    Some(match (size, signed) {
        (1, false) => i64::from(b[0]),
        (1, true) => i64::from(b[0] as i8),
        (2, false) => i64::from(u16::from_ne_bytes(b.try_into().ok()?)),
        (2, true) => i64::from(i16::from_ne_bytes(b.try_into().ok()?)),
        (4, false) => i64::from(u32::from_ne_bytes(b.try_into().ok()?)),
        (4, true) => i64::from(i32::from_ne_bytes(b.try_into().ok()?)),
        (8, _) => i64::from_ne_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

/// Reads a string field: a fixed `char[N]` or a `__data_loc char[]`, up to its NUL.
pub fn string<'a>(payload: &'a [u8], f: &Field) -> Option<&'a str> {
    let bytes = if f.data_loc {
        let end = f.offset.checked_add(4)?;
        let loc = u32::from_ne_bytes(payload.get(f.offset..end)?.try_into().ok()?);
        let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
        // `__rel_loc` offsets count from the end of the field itself.
        let off = if f.ctype.starts_with("__rel_loc") {
            off + end
        } else {
            off
        };
        payload.get(off..off + len)?
    } else {
        payload.get(f.offset..f.offset.checked_add(f.size)?)?
    };
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).ok()
}

/// `prev_state` as the kernel prints it: `R`, `R+` (preempted), `S`, `D`, `S|D`-style unions.
pub fn task_state(state: i64) -> Cow<'static, str> {
    const LETTERS: [&str; 8] = ["S", "D", "T", "t", "X", "Z", "P", "I"];
    let bits = state & 0xff;
    if bits == 0 {
        return Cow::Borrowed(if state & 0x100 != 0 { "R+" } else { "R" });
    }
    if bits.count_ones() == 1 {
        return Cow::Borrowed(LETTERS[bits.trailing_zeros() as usize]);
    }
    Cow::Owned(
        LETTERS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join("|"),
    )
}

/// System call name by number (x86_64 table).
pub fn syscall_name(nr: i64) -> Cow<'static, str> {
    usize::try_from(nr)
        .ok()
        .and_then(|i| syscalls_x86_64::NAMES.get(i))
        .filter(|n| !n.is_empty())
        .map_or_else(|| Cow::Owned(format!("sys_{nr}")), |n| Cow::Borrowed(*n))
}

/// Process facts the events do not carry: thread → (pid, comm), device → disk name.
#[derive(Debug, Default)]
pub struct Names {
    tgid: FxHashMap<i32, Option<i32>>,
    comm: FxHashMap<i32, Rc<str>>,
    idle: FxHashMap<u32, Rc<str>>,
    /// `major:minor` and disk name per dev_t.
    disks: FxHashMap<i64, (Rc<str>, Option<Rc<str>>)>,
    /// Kernel symbols, loaded when functions are traced.
    pub kernel: Option<crate::symbolize::Kallsyms>,
}

impl Names {
    /// The process of a thread (from /proc on first sight; `None` once it is gone).
    pub fn pid_of(&mut self, tid: i32) -> Option<i32> {
        if tid == 0 {
            return Some(0);
        }
        *self.tgid.entry(tid).or_insert_with(|| {
            let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Learns a thread's name from an event that carries it.
    pub fn learn(&mut self, tid: i32, comm: &str) {
        if tid != 0 && self.comm.get(&tid).is_none_or(|c| &**c != comm) {
            self.comm.insert(tid, Rc::from(comm));
        }
    }

    /// A thread's name: learned from events, else /proc.
    pub fn comm_of(&mut self, tid: i32, cpu: u32) -> Option<Rc<str>> {
        if tid == 0 {
            let idle = self
                .idle
                .entry(cpu)
                .or_insert_with(|| Rc::from(format!("swapper/{cpu}")));
            return Some(idle.clone());
        }
        if let Some(c) = self.comm.get(&tid) {
            return Some(c.clone());
        }
        let c: Rc<str> = Rc::from(
            std::fs::read_to_string(format!("/proc/{tid}/comm"))
                .ok()?
                .trim_end(),
        );
        self.comm.insert(tid, c.clone());
        Some(c)
    }

    /// The kernel function at `addr` (hex when /proc/kallsyms does not know it).
    pub fn kernel_name(&self, addr: u64) -> Cow<'_, str> {
        match self.kernel.as_ref().and_then(|k| k.lookup(addr)) {
            Some((name, _)) => Cow::Borrowed(name),
            None => Cow::Owned(format!("{addr:#x}")),
        }
    }

    /// `major:minor` and the disk name (`sda`) of a kernel dev_t.
    fn disk(&mut self, dev: i64) -> (Rc<str>, Option<Rc<str>>) {
        self.disks
            .entry(dev)
            .or_insert_with(|| {
                let (maj, min) = (dev >> 20, dev & 0xfffff);
                let name = std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/uevent"))
                    .ok()
                    .and_then(|u| {
                        u.lines()
                            .find_map(|l| l.strip_prefix("DEVNAME="))
                            .map(Rc::from)
                    });
                (Rc::from(format!("{maj}:{min}")), name)
            })
            .clone()
    }
}

/// Decodes one event into its rows.
pub fn decode(
    ev: &Event,
    ts_ns: i64,
    cpu: u32,
    payload: &[u8],
    names: &mut Names,
    rows: &mut Rows,
) {
    let tid = int_at(payload, 4, 4, true).unwrap_or(0) as i32;
    let fmt = &ev.format;
    let get = |name: &str| fmt.field(name).and_then(|f| int(payload, f));
    let text = |name: &str| fmt.field(name).and_then(|f| string(payload, f));
    // Learn names first so the rows of this very event carry them.
    match ev.kind {
        Kind::Switch => {
            if let (Some(p), Some(c)) = (get("prev_pid"), text("prev_comm")) {
                names.learn(p as i32, c);
            }
            if let (Some(p), Some(c)) = (get("next_pid"), text("next_comm")) {
                names.learn(p as i32, c);
            }
        }
        Kind::Wakeup { .. } => {
            if let (Some(p), Some(c)) = (get("pid"), text("comm")) {
                names.learn(p as i32, c);
            }
        }
        Kind::Process("fork") => {
            if let (Some(p), Some(c)) = (get("child_pid"), text("child_comm")) {
                names.learn(p as i32, c);
            }
        }
        _ => {}
    }
    // The current task's pid and name only for the rows that carry them: switches and wakeups
    // name their tasks themselves and function calls are counted, so at their rates the lookup
    // (a /proc read for each thread first seen) would be work for nothing.
    let task_rows = !matches!(
        ev.kind,
        Kind::Switch | Kind::Wakeup { .. } | Kind::Function | Kind::GraphEntry
    );
    let (pid, comm) = if task_rows {
        (names.pid_of(tid), names.comm_of(tid, cpu))
    } else {
        (None, None)
    };
    let comm = comm.as_deref();
    let cpu_i = cpu as i32;

    // Function tracer events are aggregated, never stored one by one.
    let traced_function = matches!(ev.kind, Kind::Function | Kind::GraphEntry | Kind::GraphExit);
    if !ev.typed_only && !traced_function {
        generic(ev, ts_ns, cpu_i, pid, tid, comm, payload, &mut rows.ftrace);
    }

    match ev.kind {
        Kind::Block(phase) => {
            let dev = get("dev").unwrap_or(0);
            let nr_sector = get("nr_sector").unwrap_or(0) as u32;
            let (dev_s, disk) = names.disk(dev);
            rows.block.push(&BlockRq {
                ts_ns,
                cpu: cpu_i,
                pid,
                tid,
                comm,
                phase,
                dev: &dev_s,
                disk: disk.as_deref(),
                sector: get("sector").unwrap_or(0) as u64,
                nr_sector,
                bytes: get("bytes").map_or(u64::from(nr_sector) * 512, |b| b as u64),
                rwbs: text("rwbs").unwrap_or(""),
                error: (phase == "complete")
                    .then(|| get("error").or_else(|| get("errors")).unwrap_or(0) as i32),
            });
        }
        Kind::Switch => rows.switch.push(&SchedSwitch {
            ts_ns,
            cpu: cpu_i,
            prev_tid: get("prev_pid").unwrap_or(0) as i32,
            prev_comm: text("prev_comm").unwrap_or(""),
            prev_prio: get("prev_prio").unwrap_or(0) as i32,
            prev_state: &task_state(get("prev_state").unwrap_or(0)),
            next_tid: get("next_pid").unwrap_or(0) as i32,
            next_comm: text("next_comm").unwrap_or(""),
            next_prio: get("next_prio").unwrap_or(0) as i32,
        }),
        Kind::Wakeup { new } => rows.wakeup.push(&SchedWakeup {
            ts_ns,
            cpu: cpu_i,
            waker_tid: tid,
            tid: get("pid").unwrap_or(0) as i32,
            comm: text("comm").unwrap_or(""),
            prio: get("prio").unwrap_or(0) as i32,
            target_cpu: get("target_cpu").unwrap_or(-1) as i32,
            new,
        }),
        Kind::SysEnter | Kind::SysExit => {
            let nr = get("id").unwrap_or(-1);
            let enter = ev.kind == Kind::SysEnter;
            let arg = |i: usize| {
                let f = fmt.field("args")?;
                enter
                    .then(|| int_at(payload, f.offset + i * 8, 8, false))
                    .flatten()
                    .map(|v| v as u64)
            };
            rows.syscall.push(&Syscall {
                ts_ns,
                cpu: cpu_i,
                pid,
                tid,
                comm,
                phase: if enter { "enter" } else { "exit" },
                nr: nr as i32,
                name: &syscall_name(nr),
                ret: if enter { None } else { get("ret") },
                arg0: arg(0),
                arg1: arg(1),
                arg2: arg(2),
                arg3: arg(3),
                arg4: arg(4),
                arg5: arg(5),
            });
        }
        Kind::Process(event) => {
            let (who, who_comm) = match event {
                "fork" => (get("parent_pid"), text("parent_comm").map(str::to_string)),
                "exit" => (get("pid"), text("comm").map(str::to_string)),
                _ => (get("pid"), comm.map(str::to_string)),
            };
            rows.process.push(&SchedProcess {
                ts_ns,
                cpu: cpu_i,
                event,
                tid: who.unwrap_or(tid as i64) as i32,
                comm: who_comm.as_deref().unwrap_or(""),
                child_tid: get("child_pid").map(|v| v as i32),
                child_comm: text("child_comm"),
                filename: text("filename"),
            });
        }
        Kind::Function => {
            if let Some(ip) = get("ip") {
                *rows.func_calls.entry((cpu, ip as u64)).or_default() += 1;
            }
        }
        Kind::GraphExit => {
            let (Some(func), Some(call), Some(ret)) =
                (get("func"), get("calltime"), get("rettime"))
            else {
                return;
            };
            rows.func_graph.push(&FuncGraph {
                ts_ns: call,
                cpu: cpu_i,
                pid,
                tid,
                depth: get("depth").unwrap_or(0) as i32,
                function: &names.kernel_name(func as u64),
                dur_ns: ret.saturating_sub(call),
            });
        }
        Kind::GraphEntry | Kind::Other => {}
    }
}

/// The `ftrace_event` row of an event: every field by name; integer arrays (syscall args) as
/// `name[i]`.
#[allow(clippy::too_many_arguments)]
fn generic(
    ev: &Event,
    ts_ns: i64,
    cpu: i32,
    pid: Option<i32>,
    tid: i32,
    comm: Option<&str>,
    payload: &[u8],
    out: &mut FtraceEventBuilder,
) {
    let (ints, strs) = fields(ev, payload);
    out.push(&FtraceEvent {
        ts_ns,
        cpu,
        pid,
        tid,
        comm,
        event: &ev.full_name,
        int_fields: &ints,
        str_fields: &strs,
    });
}

/// Every field of an event's record (`payload`, common fields first as the format lays them
/// out) by name: integers, with integer arrays (syscall args) as `name[i]`, and strings.
/// Fields the record is too short for are left out.
#[allow(clippy::type_complexity)]
pub fn fields<'a>(
    ev: &'a Event,
    payload: &'a [u8],
) -> (Vec<(&'a str, i64)>, Vec<(&'a str, &'a str)>) {
    let fmt = &ev.format;
    let mut ints: Vec<(&str, i64)> = Vec::with_capacity(fmt.fields.len() + ev.elem_names.len());
    let mut strs: Vec<(&str, &str)> = Vec::new();
    let mut elem_names = ev.elem_names.iter();
    for f in &fmt.fields {
        if f.is_string() {
            if let Some(s) = string(payload, f) {
                strs.push((&f.name, s));
            }
        } else if f.array_len > 0 && !f.data_loc {
            let elem = f.size / f.array_len;
            for (i, name) in (0..f.array_len).zip(&mut elem_names) {
                if let Some(v) = int_at(payload, f.offset + i * elem, elem, f.signed) {
                    ints.push((name, v));
                }
            }
        } else if let Some(v) = int(payload, f) {
            ints.push((&f.name, v));
        }
    }
    (ints, strs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_task_states_as_the_kernel_does() {
        assert_eq!(task_state(0), "R");
        assert_eq!(task_state(0x100), "R+");
        assert_eq!(task_state(1), "S");
        assert_eq!(task_state(2), "D");
        assert_eq!(task_state(0x80), "I");
    }

    fn event(system: &str, text: &str) -> Event {
        Event::new(super::super::format::parse(system, text).unwrap())
    }

    #[test]
    fn hot_events_live_in_their_typed_tables_whole() {
        // This kernel's formats: every field has a typed column, so nothing is dropped.
        for (system, text) in [
            (
                "sched",
                include_str!("../../tests/data/ftrace/sched_switch.format"),
            ),
            (
                "sched",
                include_str!("../../tests/data/ftrace/sched_wakeup.format"),
            ),
            (
                "raw_syscalls",
                include_str!("../../tests/data/ftrace/sys_enter.format"),
            ),
        ] {
            let ev = event(system, text);
            assert!(ev.typed_only, "{}", ev.full_name);
            assert_eq!(ev.dropped_fields, Vec::<String>::new(), "{}", ev.full_name);
        }
        // A field a newer kernel might add is named, not silently lost.
        let switch = include_str!("../../tests/data/ftrace/sched_switch.format");
        let at = switch.find("\nprint fmt").unwrap();
        let extra = format!(
            "{}\tfield:int prev_cgroup;\toffset:64;\tsize:4;\tsigned:1;\n{}",
            &switch[..at],
            &switch[at..]
        );
        let ev = event("sched", &extra);
        assert_eq!(ev.dropped_fields, vec!["prev_cgroup".to_string()]);
        // Block events keep their generic rows (their typed rows leave `cmd` out).
        let block = "name: block_rq_issue\nID: 2104\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n\nprint fmt: \"%d\", REC->dev\n";
        assert!(!event("block", block).typed_only);
    }

    /// An event payload: common header (type, flags, preempt count, pid) then `body`, padded
    /// to 4 bytes, as the page's 32-bit words.
    fn payload(id: u16, pid: i32, body: &[u8]) -> Vec<u32> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_ne_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&pid.to_ne_bytes());
        b.extend_from_slice(body);
        b.resize(b.len().div_ceil(4) * 4, 0);
        b.chunks(4)
            .map(|w| u32::from_ne_bytes(w.try_into().unwrap()))
            .collect()
    }

    /// A kprobe's format as the kernel writes it for
    /// `p:perfpack_1/myopen do_sys_openat2 dfd=%di:s32 filename=+0(%si):string`.
    const KPROBE: &str = "name: myopen\nID: 1901\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:s32 dfd;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] filename;\toffset:20;\tsize:4;\tsigned:1;\n\nprint fmt: \"(%lx) dfd=%d filename=\\\"%s\\\"\", REC->__probe_ip, REC->dfd, __get_str(filename)\n";

    #[test]
    fn function_graph_and_kprobe_events_decode() {
        let function = event(
            "ftrace",
            include_str!("../../tests/data/ftrace/function.format"),
        );
        let exit = event(
            "ftrace",
            include_str!("../../tests/data/ftrace/funcgraph_exit.format"),
        );
        let kprobe = event("perfpack_1", KPROBE);
        let (vfs_read, ksys_read) = (0xffff_ffff_8130_0000u64, 0xffff_ffff_8130_0400u64);
        let mut names = Names {
            kernel: Some(
                crate::symbolize::Kallsyms::parse(&format!(
                    "{vfs_read:x} T vfs_read\n{ksys_read:x} T ksys_read\n"
                ))
                .unwrap(),
            ),
            ..Names::default()
        };
        let word = |v: u64| v.to_ne_bytes();
        // Three calls of vfs_read (two from ksys_read), one return with its times, one probe hit.
        let call = |ip: u64, parent: u64| payload(1, 77, &[word(ip), word(parent)].concat());
        let ret = payload(
            10,
            77,
            &[
                word(vfs_read).as_slice(),
                &1u32.to_ne_bytes(),
                &0u32.to_ne_bytes(),
                &word(5_000),
                &word(5_750),
            ]
            .concat(),
        );
        let path = b"/etc/hosts\0";
        let loc = ((path.len() as u32) << 16) | 24;
        let probe = payload(
            1901,
            77,
            &[
                word(0xffff_ffff_8140_0000).as_slice(),
                &(-100i32).to_ne_bytes(),
                &loc.to_ne_bytes(),
                path,
            ]
            .concat(),
        );
        let entries: Vec<(u32, u32, Vec<u32>)> = [
            call(vfs_read + 4, ksys_read + 0x20),
            call(vfs_read + 4, ksys_read + 0x20),
            call(vfs_read + 4, 0xffff_ffff_8100_0000),
            ret,
            probe,
        ]
        .into_iter()
        .map(|words| (words.len() as u32, 10, words))
        .collect();
        let raw = super::super::page::tests::page(1_000, 0, &entries, None);
        let mut rows = Rows::default();
        super::super::page::walk(&raw, 16, |ts, p| {
            let ev = match u16::from_ne_bytes([p[0], p[1]]) {
                1 => &function,
                10 => &exit,
                _ => &kprobe,
            };
            decode(ev, ts as i64, 0, p, &mut names, &mut rows);
        })
        .unwrap();
        // The function tracer's ip is the call site inside the function (mcount/fentry).
        assert_eq!(rows.func_calls.get(&(0, vfs_read + 4)), Some(&3));
        let graph = rows.func_graph.finish();
        assert_eq!(graph.num_rows(), 1);
        let col = |n: &str| graph.column_by_name(n).unwrap().clone();
        use arrow_array::Array as _;
        use arrow_array::cast::AsArray as _;
        use arrow_array::types::{Int32Type, Int64Type};
        assert_eq!(col("ts_ns").as_primitive::<Int64Type>().value(0), 5_000);
        assert_eq!(col("dur_ns").as_primitive::<Int64Type>().value(0), 750);
        assert_eq!(col("depth").as_primitive::<Int32Type>().value(0), 1);
        assert_eq!(col("function").as_string::<i32>().value(0), "vfs_read");
        // Neither kind is stored event by event; the kprobe is, with its typed fields.
        let generic = rows.ftrace.finish();
        assert_eq!(generic.num_rows(), 1);
        let event_col = generic.column_by_name("event").unwrap();
        assert_eq!(event_col.as_string::<i32>().value(0), "perfpack_1:myopen");
        let entries_of = |name: &str| {
            let m = generic.column_by_name(name).unwrap().as_map().value(0);
            let keys: Vec<String> = (0..m.len())
                .map(|i| m.column(0).as_string::<i32>().value(i).to_string())
                .collect();
            (keys, m.column(1).clone())
        };
        let (int_keys, int_values) = entries_of("int_fields");
        assert_eq!(int_keys, ["__probe_ip", "dfd"]);
        assert_eq!(int_values.as_primitive::<Int64Type>().value(1), -100);
        let (str_keys, str_values) = entries_of("str_fields");
        assert_eq!(str_keys, ["filename"]);
        assert_eq!(str_values.as_string::<i32>().value(0), "/etc/hosts");
    }

    #[test]
    fn names_syscalls() {
        assert_eq!(syscall_name(0), "read");
        assert_eq!(syscall_name(257), "openat");
        assert_eq!(syscall_name(100_000), "sys_100000");
        assert_eq!(syscall_name(-1), "sys_-1");
    }
}
