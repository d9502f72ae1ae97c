//! Every table of a bundle, declared once: name, purpose, and one doc line per column with its
//! unit. `docs/schema.md` is generated from these declarations.
//!
//! Conventions: `ts_ns` is CLOCK_MONOTONIC in nanoseconds, `dur_ns` a duration in nanoseconds;
//! `pid` is the process (thread group) id and `tid` the thread id, as the user sees them.

use crate::column::table;

table! {
    /// Symbolized frames that were hit: one row per distinct (module, address) that appears in a
    /// stored stack. Symbolization happens on the recording box; raw addresses and build ids are
    /// kept so that a later run can re-symbolize with better debug info.
    FRAME, Frame, FrameBuilder, "frame", sort_key = None, dictionary = true, {
        /// Identifier referenced by `callsite.frame_id`; unique within a bundle.
        frame_id: I64,
        /// Demangled function name, or `[unknown]` when no symbol covers the address.
        name: Str,
        /// Path of the module (ELF file, `[kernel.kallsyms]`, kernel module name, `[jit]`).
        module: OptStr,
        /// GNU build id of the module in hex, when it has one.
        build_id: OptStr,
        /// Address relative to the module: file offset for user code, address for the kernel.
        rel_pc: OptU64,
        /// `kernel`, `user` or `unknown`.
        kind: Str,
        /// Source file from debug info, when known.
        file: OptStr,
        /// Source line from debug info, when known.
        line: OptI32,
    }
}

table! {
    /// The callsite prefix tree (as Perfetto and the Firefox profiler store stacks): each row is
    /// one frame under its parent callsite, so a whole stack is one integer, its leaf.
    CALLSITE, Callsite, CallsiteBuilder, "callsite", sort_key = None, dictionary = true, {
        /// Identifier referenced by `stack_sample.callsite_id` and `callsite.parent_id`.
        callsite_id: I64,
        /// The caller's callsite; null at the root (outermost frame).
        parent_id: OptI64,
        /// The frame at this position (`frame.frame_id`).
        frame_id: I64,
        /// Distance from the root; the root has depth 0.
        depth: I32,
    }
}

table! {
    /// One row per stack sample from perf_event (CPU profile).
    STACK_SAMPLE, StackSample, StackSampleBuilder, "stack_sample", sort_key = Some("ts_ns"), dictionary = false, {
        /// Sample time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the sample was taken on.
        cpu: I32,
        /// Process id.
        pid: I32,
        /// Thread id.
        tid: I32,
        /// Thread name at sample time.
        comm: Str,
        /// Sampling event: `cpu-clock`, `cycles`, ...
        event: Str,
        /// What the sample stands for: event period (count of `event`) or nanoseconds for clocks.
        weight: I64,
        /// Leaf callsite of the stack; null when no callchain was captured.
        callsite_id: OptI64,
        /// How the user part of the stack was obtained: `fp` (the kernel's frame-pointer walk),
        /// `dwarf` (unwound on the box with the mapped files' CFI), `mixed` (CFI for some frames,
        /// frame pointers for those without CFI), `kernel` (no user part); null when unknown
        /// (imported stacks).
        unwind: OptStr,
        /// Whether unwinding stopped before the outermost frame (stack copy too short, no
        /// unwind information, JIT code): the stack's root is then a `[truncated]` frame. Null
        /// when unknown (frame-pointer and imported stacks).
        truncated: OptBool,
    }
}

table! {
    /// The fields of the tracepoint hits sampled with stacks (`perfpack-record --stack-event
    /// block:block_rq_insert`): one row per such `stack_sample` row, which it matches on
    /// (`ts_ns`, `cpu`, `tid`, `event`). `perfpack flamegraph --weight bytes` weighs a sample by
    /// its byte field from here.
    SAMPLE_FIELD, SampleField, SampleFieldBuilder, "sample_field", sort_key = Some("ts_ns"), dictionary = false, {
        /// Sample time, CLOCK_MONOTONIC nanoseconds (`stack_sample.ts_ns`).
        ts_ns: I64,
        /// CPU the sample was taken on.
        cpu: I32,
        /// Thread id.
        tid: I32,
        /// The tracepoint as `system:name` (`stack_sample.event`).
        event: Str,
        /// Integer fields by name (signedness as in the format file; arrays as `name[i]`).
        int_fields: MapI64,
        /// String fields by name.
        str_fields: MapStr,
    }
}

table! {
    /// Threads and processes: seen at start (procfs snapshot) and on fork, exec, comm and exit.
    THREAD, Thread, ThreadBuilder, "thread", sort_key = Some("ts_ns"), dictionary = true, {
        /// When this state was observed, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// Process id.
        pid: I32,
        /// Thread id.
        tid: I32,
        /// Parent process id, when known.
        ppid: OptI32,
        /// Thread name.
        comm: Str,
        /// Process command line, arguments separated by spaces (processes only).
        cmdline: OptStr,
        /// Path of the process executable (processes only).
        exe: OptStr,
        /// Process start time, CLOCK_MONOTONIC nanoseconds, when known.
        start_ts_ns: OptI64,
        /// Why the row exists: `snapshot`, `fork`, `exec`, `comm` or `exit`.
        reason: Str,
    }
}

table! {
    /// Memory mappings of executable code, as used for symbolization.
    MAPPING, Mapping, MappingBuilder, "mapping", sort_key = Some("ts_ns"), dictionary = true, {
        /// When the mapping was observed, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// Process id.
        pid: I32,
        /// First address of the mapping.
        start: U64,
        /// One past the last address of the mapping.
        end: U64,
        /// File offset that `start` maps, bytes.
        file_offset: U64,
        /// Mapped file path (`[vdso]` and the like for anonymous code).
        path: Str,
        /// GNU build id of the file in hex, when it has one.
        build_id: OptStr,
        /// Whether the code keeps frame pointers; false means user stacks through it are short or
        /// wrong; null when unknown.
        frame_pointers: OptBool,
    }
}

table! {
    /// Captured tracepoint events with their fields by name, except the hot ones (raw_syscalls
    /// sys_enter/sys_exit, sched_switch, sched_wakeup, sched_wakeup_new), which are stored once,
    /// in their typed tables below. SQL reads these files as `ftrace_event_stored`; its
    /// `ftrace_event` is a view of every event, these and the typed ones rebuilt.
    FTRACE_EVENT, FtraceEvent, FtraceEventBuilder, "ftrace_event", sort_key = Some("ts_ns"), dictionary = false, {
        /// Event time, CLOCK_MONOTONIC nanoseconds (trace_clock `mono`).
        ts_ns: I64,
        /// CPU the event was recorded on.
        cpu: I32,
        /// Process id of the current task, when known.
        pid: OptI32,
        /// Thread id of the current task (`common_pid`).
        tid: I32,
        /// Name of the current task, when known.
        comm: OptStr,
        /// Event as `system:name`, e.g. `block:block_rq_issue`.
        event: Str,
        /// Integer fields by name (signedness as in the format file).
        int_fields: MapI64,
        /// String and array fields by name.
        str_fields: MapStr,
    }
}

table! {
    /// Block I/O requests: one row per phase (`start`, `insert`, `issue`, `complete`) of each
    /// request. `start` (block_io_start, Linux 6.5+) is recorded in the task that made the
    /// request; `issue` often runs in another (a kworker or kblockd).
    BLOCK_RQ, BlockRq, BlockRqBuilder, "block_rq", sort_key = Some("ts_ns"), dictionary = false, {
        /// Event time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the event was recorded on.
        cpu: I32,
        /// Process id of the current task, when known.
        pid: OptI32,
        /// Thread id of the current task: the submitter for `start` (and mostly for `insert`),
        /// whoever dispatched the request for `issue`.
        tid: I32,
        /// Name of the current task, when known.
        comm: OptStr,
        /// `start`, `insert`, `issue` or `complete`.
        phase: Str,
        /// Device as `major:minor`.
        dev: Str,
        /// Device name (`sda`, `nvme0n1`), when the recorder could resolve it.
        disk: OptStr,
        /// First sector, 512-byte units.
        sector: U64,
        /// Length in 512-byte sectors.
        nr_sector: U32,
        /// Length in bytes.
        bytes: U64,
        /// Operation flags as the kernel prints them (`R`, `W`, `WS`, `FF`, ...).
        rwbs: Str,
        /// Completion error (0 on success); null for other phases.
        error: OptI32,
    }
}

table! {
    /// Context switches (`sched:sched_switch`).
    SCHED_SWITCH, SchedSwitch, SchedSwitchBuilder, "sched_switch", sort_key = Some("ts_ns"), dictionary = false, {
        /// Switch time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU that switched.
        cpu: I32,
        /// Thread switched out (kernel field `prev_pid`).
        prev_tid: I32,
        /// Name of the thread switched out.
        prev_comm: Str,
        /// Kernel priority of the thread switched out.
        prev_prio: I32,
        /// State the thread left in: `R` (preempted), `S` (sleep), `D` (uninterruptible), ...
        prev_state: Str,
        /// Thread switched in (kernel field `next_pid`).
        next_tid: I32,
        /// Name of the thread switched in.
        next_comm: Str,
        /// Kernel priority of the thread switched in.
        next_prio: I32,
    }
}

table! {
    /// Wakeups (`sched:sched_wakeup` and `sched:sched_wakeup_new`).
    SCHED_WAKEUP, SchedWakeup, SchedWakeupBuilder, "sched_wakeup", sort_key = Some("ts_ns"), dictionary = false, {
        /// Wakeup time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the wakeup was recorded on.
        cpu: I32,
        /// Thread that did the waking (`common_pid`; 0 from interrupts and idle).
        waker_tid: I32,
        /// Thread woken.
        tid: I32,
        /// Name of the thread woken.
        comm: Str,
        /// Kernel priority of the thread woken.
        prio: I32,
        /// CPU the woken thread was queued on.
        target_cpu: I32,
        /// True for `sched_wakeup_new` (first wakeup of a new task).
        new: Bool,
    }
}

table! {
    /// System calls (`raw_syscalls:sys_enter` / `sys_exit`): one row per enter and per exit.
    SYSCALL, Syscall, SyscallBuilder, "syscall", sort_key = Some("ts_ns"), dictionary = false, {
        /// Event time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the event was recorded on.
        cpu: I32,
        /// Process id, when known.
        pid: OptI32,
        /// Thread id.
        tid: I32,
        /// Thread name, when known.
        comm: OptStr,
        /// `enter` or `exit`.
        phase: Str,
        /// System call number (architecture of the recording box).
        nr: I32,
        /// System call name, resolved on the recording box.
        name: Str,
        /// Return value (exit only).
        ret: OptI64,
        /// First argument (enter only).
        arg0: OptU64,
        /// Second argument (enter only).
        arg1: OptU64,
        /// Third argument (enter only).
        arg2: OptU64,
        /// Fourth argument (enter only).
        arg3: OptU64,
        /// Fifth argument (enter only).
        arg4: OptU64,
        /// Sixth argument (enter only).
        arg5: OptU64,
    }
}

table! {
    /// Process lifecycle (`sched:sched_process_fork`, `_exec`, `_exit`).
    SCHED_PROCESS, SchedProcess, SchedProcessBuilder, "sched_process", sort_key = Some("ts_ns"), dictionary = false, {
        /// Event time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the event was recorded on.
        cpu: I32,
        /// `fork`, `exec` or `exit`.
        event: Str,
        /// Thread concerned: the parent for fork, the exec'ing or exiting thread otherwise.
        tid: I32,
        /// Its name.
        comm: Str,
        /// New thread (fork only).
        child_tid: OptI32,
        /// Name of the new thread (fork only).
        child_comm: OptStr,
        /// Executed file (exec only).
        filename: OptStr,
    }
}

table! {
    /// Kernel function calls counted per function, CPU and interval (`--funccount`, the
    /// function tracer filtered by `set_ftrace_filter`).
    FUNC_COUNT, FuncCount, FuncCountBuilder, "func_count", sort_key = Some("ts_ns"), dictionary = false, {
        /// End of the interval, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the calls ran on.
        cpu: I32,
        /// Kernel function (from /proc/kallsyms; hex when unknown).
        function: Str,
        /// Calls in the interval.
        count: U64,
    }
}

table! {
    /// Kernel function calls with their durations (`--funcgraph`, the function_graph tracer
    /// filtered by `set_graph_function`): one row per return.
    FUNC_GRAPH, FuncGraph, FuncGraphBuilder, "func_graph", sort_key = Some("ts_ns"), dictionary = false, {
        /// Call time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU the call returned on.
        cpu: I32,
        /// Process of the calling thread, when known.
        pid: OptI32,
        /// Calling thread.
        tid: I32,
        /// Call depth below the traced function (0 = the traced function itself).
        depth: I32,
        /// Kernel function (from /proc/kallsyms; hex when unknown).
        function: Str,
        /// Call to return, nanoseconds.
        dur_ns: I64,
    }
}

table! {
    /// Performance-monitoring counters, read every interval from counting groups.
    PMC, Pmc, PmcBuilder, "pmc", sort_key = Some("ts_ns"), dictionary = false, {
        /// End of the interval, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// Length of the interval, nanoseconds.
        dur_ns: I64,
        /// CPU counted, or null for a per-process counter.
        cpu: OptI32,
        /// Process counted, or null for a per-CPU counter.
        pid: OptI32,
        /// Event name: `cycles`, `instructions`, `ref-cycles`, `cache-misses`, ...
        event: Str,
        /// Raw count over the interval (not scaled for multiplexing).
        value: I64,
        /// Nanoseconds the event was enabled during the interval.
        time_enabled_ns: I64,
        /// Nanoseconds the event was counting; scale `value` by enabled/running when they differ.
        time_running_ns: I64,
    }
}

table! {
    /// Model-specific registers and frequency readings, per CPU.
    MSR, Msr, MsrBuilder, "msr", sort_key = Some("ts_ns"), dictionary = false, {
        /// Read time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// CPU read.
        cpu: I32,
        /// Register address (0 for values that are not registers, e.g. cpufreq).
        address: U32,
        /// Register name: `TSC`, `APERF`, `MPERF`, `THERM_STATUS`, `TEMPERATURE_TARGET`,
        /// `PLATFORM_INFO`, `PKG_ENERGY_STATUS`, `scaling_cur_freq_khz`, ...
        name: Str,
        /// Raw value as read (counters are cumulative).
        value: U64,
        /// `msr-dev` (/dev/cpu/N/msr), `perf-msr-pmu` or `cpufreq`.
        source: Str,
    }
}

table! {
    /// System counters from procfs (the sar, vmstat, iostat and mpstat data), sampled every
    /// interval.
    SYS_COUNTER, SysCounter, SysCounterBuilder, "sys_counter", sort_key = Some("ts_ns"), dictionary = false, {
        /// Read time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// `stat`, `meminfo`, `vmstat`, `diskstats`, `net_dev`, `snmp`, `loadavg`, `pressure`
        /// or `schedstat`.
        source: Str,
        /// Counter name as the source spells it (`user`, `MemAvailable`, `sectors_read`, ...).
        name: Str,
        /// CPU, device or interface the value belongs to; null for system-wide values.
        instance: OptStr,
        /// `counter` (cumulative since boot: take deltas) or `gauge` (a level at `ts_ns`).
        kind: Str,
        /// The value, in the unit its name ends with (`_ns`, `_bytes`, `_pct`), otherwise a
        /// count; procfs jiffies, kB, microseconds and milliseconds are converted.
        value: F64,
    }
}

table! {
    /// Per-process CPU, memory, context switches and I/O (pidstat), read every interval from
    /// /proc/PID/{stat,status,io} for the processes that used at least the recorder's threshold
    /// of CPU in the interval (1% of one CPU by default, at most 100 per interval). Counters are
    /// cumulative since the process started: take deltas between a process's rows.
    PROCESS_STAT, ProcessStat, ProcessStatBuilder, "process_stat", sort_key = Some("ts_ns"), dictionary = false, {
        /// Read time, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// Process id.
        pid: I32,
        /// Process name.
        comm: Str,
        /// User CPU time since the process started, ns.
        utime_ns: I64,
        /// System CPU time since the process started, ns.
        stime_ns: I64,
        /// Resident set size, bytes.
        rss_bytes: I64,
        /// Threads.
        threads: I32,
        /// Voluntary context switches (blocking) of the main thread since it started
        /// (/proc/PID/status, as `pidstat -w` shows per task).
        voluntary_switches: OptI64,
        /// Involuntary context switches (preemption) of the main thread since it started.
        involuntary_switches: OptI64,
        /// Bytes read from storage since the process started (/proc/PID/io), when readable.
        read_bytes: OptI64,
        /// Bytes written to storage since the process started, when readable.
        write_bytes: OptI64,
    }
}

table! {
    /// Configuration of the recorded machine, read once at the start (kernel command line,
    /// sysctls, transparent huge pages, CPU governor and boost, NUMA, clocksource, cgroup
    /// limits of the traced scope, mounts, block queues, NICs): what `perfpack compare` lists
    /// first when two bundles differ.
    CONFIG, Config, ConfigBuilder, "config", sort_key = None, dictionary = true, {
        /// Setting, dotted: `sysctl.vm.swappiness`, `kernel.cmdline`, `thp.enabled`,
        /// `cpu0.scaling_governor`, `block.sda.scheduler`, `net.eth0.mtu`, `mount./var`, ...
        key: Str,
        /// Its value as the file shows it (whitespace collapsed).
        value: Str,
    }
}

table! {
    /// Cgroups (v2) seen in the recording: the id the kernel reports with each sample
    /// (`PERF_SAMPLE_CGROUP`, the cgroup directory's inode) and its path when first seen.
    CGROUP, Cgroup, CgroupBuilder, "cgroup", sort_key = None, dictionary = true, {
        /// The kernel's cgroup id (`cgroup_id` of `task_cgroup`).
        cgroup_id: U64,
        /// Path under the cgroup v2 mount (`/system.slice/ssh.service`); `[removed]` when it
        /// was gone before the recorder looked it up.
        path: Str,
        /// Container id parsed from the path (docker, containerd/CRI, CRI-O, podman, kubepods),
        /// when it names one.
        container_id: OptStr,
    }
}

table! {
    /// Which cgroup each thread was in: a row when a thread is first sampled and whenever a
    /// sample shows it in another cgroup, so each sample's cgroup is that of the thread's last
    /// row at or before it (the `cgroup_sample` view).
    TASK_CGROUP, TaskCgroup, TaskCgroupBuilder, "task_cgroup", sort_key = Some("ts_ns"), dictionary = true, {
        /// Time of the sample that showed it, CLOCK_MONOTONIC nanoseconds.
        ts_ns: I64,
        /// Process id.
        pid: I32,
        /// Thread id.
        tid: I32,
        /// The cgroup (`cgroup.cgroup_id`).
        cgroup_id: U64,
    }
}

/// Every table of format version 1, in documentation order.
pub const ALL: &[&crate::TableDef] = &[
    FRAME,
    CALLSITE,
    STACK_SAMPLE,
    SAMPLE_FIELD,
    THREAD,
    MAPPING,
    FTRACE_EVENT,
    BLOCK_RQ,
    SCHED_SWITCH,
    SCHED_WAKEUP,
    SYSCALL,
    SCHED_PROCESS,
    FUNC_COUNT,
    FUNC_GRAPH,
    PMC,
    MSR,
    SYS_COUNTER,
    PROCESS_STAT,
    CONFIG,
    CGROUP,
    TASK_CGROUP,
];

/// Looks a table up by name.
pub fn by_name(name: &str) -> Option<&'static crate::TableDef> {
    ALL.iter().copied().find(|t| t.name == name)
}
