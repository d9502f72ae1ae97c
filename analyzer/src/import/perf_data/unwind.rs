//! User stacks of a `perf record --call-graph dwarf` capture, unwound at import from the
//! registers and stack copy each sample carries, by the recorder's unwinder (framehop over the
//! mapped files' CFI, frame pointers where a file has none), as `perf script` unwinds them
//! with libdw or libunwind. Only files whose build id is the one recorded are walked over.

use linux_perf_data::linux_perf_event_reader::SampleRecord;
use perfpack_recorder::unwind::{Unwind, Unwinder, UserRegs};
use perfpack_schema::fxhash::FxHashMap;
use perfpack_schema::manifest::UnwindStat;

use super::symbols::Symbolizer;
use crate::import::stacks::{FrameRef, StackSink};

/// perf's x86_64 register numbers (`arch/x86/include/uapi/asm/perf_regs.h`).
const PERF_REG_X86_BP: u64 = 6;
const PERF_REG_X86_SP: u64 = 7;
const PERF_REG_X86_IP: u64 = 8;

/// How a sample's user stack was obtained at import.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unwound {
    pub method: &'static str,
    pub truncated: bool,
}

#[derive(Debug)]
pub(super) struct StackUnwinder {
    unwinder: Unwinder,
    addrs: Vec<u64>,
    truncated_frame: Option<i64>,
    /// Per process: (its last name, counts).
    stats: FxHashMap<i32, UnwindStat>,
}

impl StackUnwinder {
    pub(super) fn new() -> Self {
        StackUnwinder {
            unwinder: Unwinder::new(Unwind::Auto),
            addrs: Vec::with_capacity(128),
            truncated_frame: None,
            stats: FxHashMap::default(),
        }
    }

    /// Forgets what was built for `pid`: its mappings changed.
    pub(super) fn invalidate(&mut self, pid: i32) {
        self.unwinder.invalidate(pid);
    }

    /// Unwinds the user stack of `s` when it carries registers and a stack copy, pushing its
    /// frame ids leaf first onto `out` (a `[truncated]` frame at the root when the walk stopped
    /// early). `None` when the sample has no user stack copy to unwind.
    pub(super) fn unwind(
        &mut self,
        s: &SampleRecord<'_>,
        pid: i32,
        comm: &str,
        sym: &mut Symbolizer,
        sink: &mut StackSink,
        out: &mut Vec<i64>,
    ) -> Option<Unwound> {
        let regs = s.user_regs.as_ref()?;
        let (stack, dyn_size) = s.user_stack.as_ref()?;
        let regs = UserRegs {
            ip: regs.get(PERF_REG_X86_IP)?,
            sp: regs.get(PERF_REG_X86_SP)?,
            bp: regs.get(PERF_REG_X86_BP)?,
        };
        let bytes = stack.as_slice();
        let used = usize::try_from(*dyn_size)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.addrs.clear();
        let walk = {
            // The process's unwinder is built from its mappings at its first walk and reused
            // until they change.
            let maps = if self.unwinder.knows(pid) {
                Vec::new()
            } else {
                sym.unwind_maps(pid)
            };
            self.unwinder
                .walk(pid, &maps, regs, &bytes[..used], &mut self.addrs)
        };
        for &addr in &self.addrs {
            out.push(sym.user_frame(pid, addr, sink));
        }
        if walk.truncated {
            out.push(*self.truncated_frame.get_or_insert_with(|| {
                sink.frame_id(FrameRef {
                    name: "[truncated]",
                    module: Some("[truncated]"),
                    kernel: false,
                })
            }));
        }
        let stat = self.stats.entry(pid).or_insert_with(|| UnwindStat {
            pid,
            ..UnwindStat::default()
        });
        if stat.comm != comm {
            stat.comm = comm.to_string();
        }
        stat.samples += 1;
        match walk.method {
            "dwarf" => stat.dwarf += 1,
            "mixed" => stat.mixed += 1,
            _ => stat.fp += 1,
        }
        stat.truncated += u64::from(walk.truncated);
        Some(Unwound {
            method: walk.method,
            truncated: walk.truncated,
        })
    }

    /// The per-process counts, most samples first, at most `limit` processes; and the totals
    /// (samples, dwarf, mixed, fp, truncated) over every process.
    pub(super) fn stats(&self, limit: usize) -> (Vec<UnwindStat>, UnwindStat) {
        let mut rows: Vec<UnwindStat> = self.stats.values().cloned().collect();
        rows.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.pid.cmp(&b.pid)));
        let total = rows.iter().fold(UnwindStat::default(), |mut t, r| {
            t.samples += r.samples;
            t.dwarf += r.dwarf;
            t.mixed += r.mixed;
            t.fp += r.fp;
            t.truncated += r.truncated;
            t
        });
        rows.truncate(limit);
        (rows, total)
    }
}
