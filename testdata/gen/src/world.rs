//! The synthetic machine: which processes and threads exist, what their stacks look like, which
//! modules their frames come from. Names are those a real Linux box shows (postgres, nginx, a
//! JVM with JIT frames, kworkers, the idle loop), so flame graphs of fixtures read like real ones.

/// Kernel image module name, as perf prints it.
pub const KERNEL: &str = "[kernel.kallsyms]";
/// libc path.
pub const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
/// libjvm path: built without frame pointers, as in most distributions.
pub const LIBJVM: &str = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
/// JIT symbol map of the JVM process.
pub const JIT_MAP: &str = "/tmp/perf-3400.map";

/// One stack shape: user frames root first, then kernel frames toward the leaf.
#[derive(Debug)]
pub struct Template {
    /// User frames, outermost first. A `libc:`, `jvm:` or `jit:` prefix names the module;
    /// otherwise the frame is in the process executable.
    pub user: &'static [&'static str],
    /// Kernel frames, outermost first (entry code first, leaf last).
    pub kernel: &'static [&'static str],
    /// Relative frequency among the templates of the thread.
    pub weight: u32,
    /// System call a job of this shape makes, if any.
    pub syscall: Option<&'static str>,
}

impl Template {
    /// The leaf (innermost) function name without module prefix.
    pub fn leaf(&self) -> &'static str {
        let f = self
            .kernel
            .last()
            .or(self.user.last())
            .expect("non-empty stack");
        f.split_once(':')
            .filter(|(m, _)| matches!(*m, "libc" | "jvm" | "jit"))
            .map_or(f, |(_, n)| n)
    }
}

const PG: &[&str] = &[
    "_start",
    "libc:__libc_start_main",
    "main",
    "PostmasterMain",
    "ServerLoop",
    "BackendStartup",
    "PostgresMain",
];

macro_rules! stack {
    ($base:expr; $($f:literal),*) => {{
        const BASE: &[&str] = $base;
        const EXTRA: &[&str] = &[$($f),*];
        const N: usize = BASE.len() + EXTRA.len();
        const ALL: [&str; N] = {
            let mut out = [""; N];
            let mut i = 0;
            while i < BASE.len() {
                out[i] = BASE[i];
                i += 1;
            }
            let mut j = 0;
            while j < EXTRA.len() {
                out[i + j] = EXTRA[j];
                j += 1;
            }
            out
        };
        &ALL
    }};
}

const SYSCALL_ENTRY: [&str; 2] = ["entry_SYSCALL_64_after_hwframe", "do_syscall_64"];

/// postgres backend stacks.
pub const POSTGRES: &[Template] = &[
    Template {
        user: stack!(PG; "exec_simple_query", "PortalRun", "ExecutorRun", "ExecScan", "SeqNext", "heap_getnextslot", "heapgettup_pagemode"),
        kernel: &[],
        weight: 40,
        syscall: None,
    },
    Template {
        user: stack!(PG; "exec_simple_query", "PortalRun", "ExecutorRun", "ExecHashJoin", "ExecHashTableInsert", "hash_search_with_hash_value"),
        kernel: &[],
        weight: 25,
        syscall: None,
    },
    Template {
        user: stack!(PG; "pq_getbyte", "secure_read", "libc:__libc_recv"),
        kernel: stack!(&SYSCALL_ENTRY; "__x64_sys_recvfrom", "__sys_recvfrom", "tcp_recvmsg", "tcp_recvmsg_locked", "skb_copy_datagram_iter"),
        weight: 15,
        syscall: Some("recvfrom"),
    },
    Template {
        user: stack!(PG; "exec_simple_query", "PortalRun", "ExecutorRun", "ExecScan", "SeqNext", "heap_getnextslot", "ReadBufferExtended", "smgrread", "mdread", "FileRead", "libc:__libc_pread64"),
        kernel: stack!(&SYSCALL_ENTRY; "__x64_sys_pread64", "vfs_read", "ext4_file_read_iter", "filemap_read", "copy_page_to_iter"),
        weight: 20,
        syscall: Some("pread64"),
    },
];

const NGX: &[&str] = &[
    "_start",
    "libc:__libc_start_main",
    "main",
    "ngx_master_process_cycle",
    "ngx_start_worker_processes",
    "ngx_spawn_process",
    "ngx_worker_process_cycle",
    "ngx_process_events_and_timers",
    "ngx_epoll_process_events",
];

/// nginx worker stacks.
pub const NGINX: &[Template] = &[
    Template {
        user: stack!(NGX; "ngx_http_process_request", "ngx_http_handler", "ngx_http_core_run_phases", "ngx_http_static_handler", "ngx_output_chain", "ngx_linux_sendfile_chain", "libc:sendfile"),
        kernel: stack!(&SYSCALL_ENTRY; "__x64_sys_sendfile64", "do_sendfile", "splice_direct_to_actor", "tcp_sendmsg_locked", "tcp_write_xmit", "__tcp_transmit_skb"),
        weight: 50,
        syscall: Some("sendfile"),
    },
    Template {
        user: stack!(NGX; "ngx_http_wait_request_handler", "ngx_http_process_request_line", "ngx_http_process_request_headers", "ngx_http_parse_header_line"),
        kernel: &[],
        weight: 30,
        syscall: None,
    },
    Template {
        user: stack!(NGX; "libc:epoll_wait"),
        kernel: stack!(&SYSCALL_ENTRY; "__x64_sys_epoll_wait", "do_epoll_wait", "ep_poll", "schedule_hrtimeout_range"),
        weight: 20,
        syscall: Some("epoll_wait"),
    },
];

const JVM: &[&str] = &[
    "libc:start_thread",
    "jvm:thread_native_entry",
    "jvm:Thread::call_run",
];

/// JVM request thread: interpreter and JIT-compiled Java frames.
pub const JAVA_HTTP: &[Template] = &[
    Template {
        user: stack!(JVM; "jvm:JavaThread::thread_main_inner", "jvm:JavaCalls::call_helper", "jit:Lorg/apache/tomcat/util/net/NioEndpoint$SocketProcessor;::doRun", "jit:Lcom/example/OrderService;::price", "jit:Ljava/util/HashMap;::getNode"),
        kernel: &[],
        weight: 60,
        syscall: None,
    },
    Template {
        user: stack!(JVM; "jvm:JavaThread::thread_main_inner", "jvm:JavaCalls::call_helper", "jit:Lorg/apache/tomcat/util/net/NioEndpoint$SocketProcessor;::doRun", "jit:Lcom/example/OrderService;::price", "jit:Ljava/math/BigDecimal;::multiply"),
        kernel: &[],
        weight: 40,
        syscall: Some("futex"),
    },
];

/// JVM garbage collector thread.
pub const JAVA_GC: &[Template] = &[Template {
    user: stack!(JVM; "jvm:GangWorker::loop", "jvm:G1ParTask::work", "jvm:G1ParScanThreadState::trim_queue", "jvm:G1ParScanThreadState::do_copy_to_survivor_space"),
    kernel: &[],
    weight: 1,
    syscall: None,
}];

/// JVM C2 compiler thread.
pub const JAVA_C2: &[Template] = &[Template {
    user: stack!(JVM; "jvm:JavaThread::thread_main_inner", "jvm:CompileBroker::compiler_thread_loop", "jvm:C2Compiler::compile_method", "jvm:Compile::Compile", "jvm:PhaseIdealLoop::build_and_optimize"),
    kernel: &[],
    weight: 1,
    syscall: None,
}];

/// Kernel worker thread flushing block requests.
pub const KWORKER: &[Template] = &[Template {
    user: &[],
    kernel: &[
        "ret_from_fork",
        "kthread",
        "worker_thread",
        "process_one_work",
        "blk_mq_run_work_fn",
        "__blk_mq_run_hw_queue",
        "blk_mq_sched_dispatch_requests",
        "nvme_queue_rq",
    ],
    weight: 1,
    syscall: None,
}];

/// The idle loop (`swapper/N`, tid 0).
pub const IDLE: Template = Template {
    user: &[],
    kernel: &[
        "secondary_startup_64_no_verify",
        "start_secondary",
        "cpu_startup_entry",
        "do_idle",
        "default_idle_call",
        "default_idle",
    ],
    weight: 1,
    syscall: None,
};

/// A thread that runs jobs on one CPU.
#[derive(Debug, Clone)]
pub struct ThreadSpec {
    pub pid: i32,
    pub tid: i32,
    pub ppid: i32,
    pub comm: String,
    pub exe: &'static str,
    pub cmdline: &'static str,
    pub prio: i32,
    pub templates: &'static [Template],
    /// Relative share of the CPU's jobs.
    pub weight: u32,
}

/// The threads pinned to `cpu` (each runs on one CPU only, so a thread never runs twice at once).
pub fn threads_of_cpu(cpu: i32) -> Vec<ThreadSpec> {
    let java: (&str, &'static [Template]) = match cpu % 4 {
        1 => ("GC Thread#0", JAVA_GC),
        2 => ("C2 CompilerThre", JAVA_C2),
        _ => ("http-nio-8080-e", JAVA_HTTP),
    };
    vec![
        ThreadSpec {
            pid: 1210 + cpu,
            tid: 1210 + cpu,
            ppid: 1200,
            comm: "postgres".into(),
            exe: "/usr/lib/postgresql/15/bin/postgres",
            cmdline: "postgres: app orders 10.0.0.7(51422) SELECT",
            prio: 120,
            templates: POSTGRES,
            weight: 45,
        },
        ThreadSpec {
            pid: 2310 + cpu,
            tid: 2310 + cpu,
            ppid: 2300,
            comm: "nginx".into(),
            exe: "/usr/sbin/nginx",
            cmdline: "nginx: worker process",
            prio: 120,
            templates: NGINX,
            weight: 30,
        },
        ThreadSpec {
            pid: 3400,
            tid: 3401 + cpu,
            ppid: 1,
            comm: java.0.into(),
            exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            cmdline: "java -Xmx2g -jar /home/alice/orders.jar",
            prio: 120,
            templates: java.1,
            weight: 15,
        },
        ThreadSpec {
            pid: 80 + cpu,
            tid: 80 + cpu,
            ppid: 2,
            comm: format!("kworker/{cpu}:1H"),
            exe: "",
            cmdline: "",
            prio: 100,
            templates: KWORKER,
            weight: 10,
        },
    ]
}

/// Splits a template frame into (module, name, kind) for a thread with executable `exe`.
pub fn resolve_frame(
    frame: &'static str,
    kernel: bool,
    exe: &'static str,
) -> (&'static str, &'static str, &'static str) {
    if kernel {
        return (KERNEL, frame, "kernel");
    }
    match frame.split_once(':') {
        Some(("libc", name)) => (LIBC, name, "user"),
        Some(("jvm", name)) => (LIBJVM, name, "user"),
        Some(("jit", name)) => (JIT_MAP, name, "user"),
        _ => (exe, frame, "user"),
    }
}

/// System call numbers of x86_64 for the calls the fixtures make.
pub fn syscall_nr(name: &str) -> i32 {
    match name {
        "read" => 0,
        "write" => 1,
        "pread64" => 17,
        "sendfile" => 40,
        "recvfrom" => 45,
        "futex" => 202,
        "epoll_wait" => 232,
        _ => -1,
    }
}
